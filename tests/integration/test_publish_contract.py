"""The shared-DB contract under failure: crashes, concurrency, rollback, retention, least privilege."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg2
import pytest

from jobcast.errors import PublishError
from jobcast.publish.store import cleanup, prune, publish, rollback

from conftest import REPO
from test_publish import info, live, write_batch
from test_three_tasks import info as task_info
from test_three_tasks import write_category_batch, write_cvr_batch

pytestmark = pytest.mark.integration


def rows(conn):
    with conn.cursor() as cur:
        cur.execute("select job_id, salary_p10, salary_p50, salary_p90, batch_id from predictions.job_salary order by job_id")
        return cur.fetchall()


def statuses(conn):
    with conn.cursor() as cur:
        cur.execute("select batch_id, status from predictions.batches order by batch_id")
        return dict(cur.fetchall())


def batch_tables(conn):
    with conn.cursor() as cur:
        cur.execute("select tablename from pg_tables where schemaname = 'jobcast_internal' and tablename like 'salary_rows_b%%' order by 1")
        return [r[0] for r in cur.fetchall()]


@pytest.mark.parametrize("phase", ["copy", "index", "attach", "swap"])
def test_sigkill_during_each_publish_phase_leaves_the_live_batch_intact(tmp_path, db_url, conn, phase):
    good = publish(lambda: psycopg2.connect(db_url), write_batch(tmp_path / "good", list(range(1, 1001))), info())
    before = rows(conn)
    phase_file = tmp_path / "phase"
    worker = subprocess.Popen([sys.executable, str(Path(__file__).parent / "publish_worker.py"), db_url,
                               str(write_batch(tmp_path / "next", list(range(1, 2001)))), phase, str(phase_file)])
    deadline = time.monotonic() + 60
    while not (phase_file.exists() and phase_file.read_text().startswith(phase)):
        assert worker.poll() is None and time.monotonic() < deadline, "worker never reached the phase"
        time.sleep(0.05)
    crashed = int(phase_file.read_text().split()[1])
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    time.sleep(0.3)  # the server notices the dead client and aborts its transaction

    assert rows(conn) == before  # readers still see exactly the old batch
    assert statuses(conn)[crashed] in ("loading", "validated")  # the half batch is visible in the registry
    # The next run recovers: it cleans the abandoned batch and publishes.
    out = publish(lambda: psycopg2.connect(db_url), write_batch(tmp_path / "again", list(range(1, 3001))), info())
    assert live(conn)[:3] == (3000, 1, out["batch_id"])
    st = statuses(conn)
    assert st[crashed] == "failed" and st[good["batch_id"]] == "superseded"
    assert f"salary_rows_b{crashed}" not in batch_tables(conn)


def test_cleanup_command_recovers_without_a_new_publish(tmp_path, db_url, conn):
    publish(lambda: psycopg2.connect(db_url), write_batch(tmp_path / "good", [1, 2]), info())
    phase_file = tmp_path / "phase"
    worker = subprocess.Popen([sys.executable, str(Path(__file__).parent / "publish_worker.py"), db_url,
                               str(write_batch(tmp_path / "next", [1, 2, 3])), "attach", str(phase_file)])
    while not (phase_file.exists() and phase_file.read_text().startswith("attach")):
        time.sleep(0.05)
    crashed = int(phase_file.read_text().split()[1])
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    time.sleep(0.3)
    c = psycopg2.connect(db_url)
    try:
        assert cleanup(c, "salary")["abandoned"] == [crashed]
    finally:
        c.close()
    assert statuses(conn)[crashed] == "failed" and f"salary_rows_b{crashed}" not in batch_tables(conn)


def test_two_concurrent_publishes_one_proceeds_the_other_fails_at_once(tmp_path, db_url, conn):
    inside, release = threading.Event(), threading.Event()

    def on_phase(name, _bid):
        if name == "copy":
            inside.set()
            release.wait(30)

    result = {}
    first = threading.Thread(target=lambda: result.setdefault("a", publish(
        lambda: psycopg2.connect(db_url), write_batch(tmp_path / "a", list(range(100))), info(), on_phase=on_phase)))
    first.start()
    assert inside.wait(30)
    t0 = time.perf_counter()
    with pytest.raises(PublishError, match="another publish of salary is running"):
        publish(lambda: psycopg2.connect(db_url), write_batch(tmp_path / "b", list(range(50))), info())
    assert time.perf_counter() - t0 < 2  # fails at once, does not queue
    release.set()
    first.join()
    assert live(conn)[:3] == (100, 1, result["a"]["batch_id"])
    assert list(statuses(conn).values()) == ["published"]  # nothing duplicated or half-registered


def test_rollback_restores_the_previous_batch_exactly(tmp_path, db_url, conn):
    publish(lambda: psycopg2.connect(db_url), write_batch(tmp_path / "a", [1, 2, 3], [1e6, 2e6, 3e6]), info("2026-10-29", "m1"))
    before = rows(conn)
    bad = publish(lambda: psycopg2.connect(db_url), write_batch(tmp_path / "b", [1, 2, 3, 4], [9e6] * 4), info("2026-10-30", "m2"))
    c = psycopg2.connect(db_url)
    try:
        out = rollback(c, "salary")
    finally:
        c.close()
    assert rows(conn) == before
    st = statuses(conn)
    assert st[bad["batch_id"]] == "rolled_back" and st[out["live_batch_id"]] == "published"
    with conn.cursor() as cur:
        cur.execute("select model_version, prediction_date::text from predictions.job_salary limit 1")
        assert cur.fetchone() == ("m1", "2026-10-29")
    # Rolling forward again to the named batch works too.
    c = psycopg2.connect(db_url)
    try:
        rollback(c, "salary", bad["batch_id"])
        assert live(conn)[:3] == (4, 1, bad["batch_id"])
        with pytest.raises(PublishError, match="no such salary batch"):
            rollback(c, "salary", 999)
    finally:
        c.close()


def test_rollback_with_no_earlier_batch_is_a_clear_error(tmp_path, db_url):
    publish(lambda: psycopg2.connect(db_url), write_batch(tmp_path / "a", [1]), info())
    c = psycopg2.connect(db_url)
    try:
        with pytest.raises(PublishError, match="no earlier published batch"):
            rollback(c, "salary")
    finally:
        c.close()


def test_retention_drops_old_batch_data_but_keeps_the_live_one_and_history(tmp_path, db_url, conn):
    ids = [publish(lambda: psycopg2.connect(db_url), write_batch(tmp_path / f"b{i}", list(range(10 + i))), info(),
                   keep=2)["batch_id"] for i in range(5)]
    assert batch_tables(conn) == sorted(f"salary_rows_b{i}" for i in ids[-3:])  # live + 2 newest others
    assert len(statuses(conn)) == 5  # registry keeps the history
    assert live(conn)[:3] == (14, 1, ids[-1])
    c = psycopg2.connect(db_url)
    try:
        assert prune(c, "salary", 2) == {"dropped": [], "deferred": [], "note": None}  # idempotent
    finally:
        c.close()


@pytest.mark.parametrize("task, write, view", [
    ("salary", write_batch, "job_salary"),
    ("category", write_category_batch, "job_category"),
    ("cvr", write_cvr_batch, "job_cvr"),
])
def test_a_job_id_lookup_through_the_view_reads_only_the_live_batch(tmp_path, db_url, conn, task, write, view):
    for i in range(3):
        publish(lambda: psycopg2.connect(db_url), write(tmp_path / f"b{i}", list(range(1, 5001))), task_info(task))
    with conn.cursor() as cur:
        cur.execute(f"explain (analyze, costs off) select * from predictions.{view} where job_id = 42")
        plan = "\n".join(r[0] for r in cur.fetchall())
    scanned = [line for line in plan.splitlines() if f"{task}_rows_b" in line and "never executed" not in line]
    assert len(scanned) == 1 and "Index" in scanned[0], plan


def test_the_reader_role_can_read_the_views_and_nothing_else(tmp_path, db_url, conn, settings):
    publish(lambda: psycopg2.connect(db_url), write_batch(tmp_path / "a", [1, 2]), info())
    publish(lambda: psycopg2.connect(db_url), write_category_batch(tmp_path / "c", [1, 2, 3]), task_info("category"))
    publish(lambda: psycopg2.connect(db_url), write_cvr_batch(tmp_path / "v", [1]), task_info("cvr"))
    proc = subprocess.run([str(Path(sys.executable).parent / "jobcast"), "db", "create-reader", "webapp_test"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    reader = psycopg2.connect(db_url.replace("://jobcast@", "://webapp_test@"))
    reader.autocommit = True
    try:
        with reader.cursor() as cur:
            cur.execute("select count(*) from predictions.job_salary")
            assert cur.fetchone()[0] == 2
            cur.execute("select count(*), min(top3 -> 0 ->> 'category') is not null from predictions.job_category")
            assert cur.fetchone() == (3, True)
            cur.execute("select count(*) from predictions.job_cvr")
            assert cur.fetchone()[0] == 1
            cur.execute("select count(*) from predictions.batches")
            assert cur.fetchone()[0] == 3
            for stmt in ("insert into predictions.batches (task, logical_date, model_version) values ('salary', now(), 'x')",
                         "update predictions.batches set status = 'failed'",
                         "delete from predictions.batches",
                         "select * from jobcast_internal.salary_rows",
                         "select * from jobcast_internal.category_rows",
                         "select * from jobcast_internal.cvr_rows",
                         "select * from jobcast_internal.current_batch",
                         "update jobcast_internal.current_batch set batch_id = 1",
                         "create table predictions.mine (x int)"):
                with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                    cur.execute(stmt)
            for view in ("job_salary", "job_category", "job_cvr"):
                for stmt in (f"delete from predictions.{view}", f"update predictions.{view} set job_id = 0"):
                    with pytest.raises((psycopg2.errors.InsufficientPrivilege, psycopg2.errors.ObjectNotInPrerequisiteState)):
                        cur.execute(stmt)  # a read-only view either way
    finally:
        reader.close()


def test_every_public_column_is_documented_and_the_doc_page_is_current(conn):
    from jobcast.docs import render

    with conn.cursor() as cur:
        cur.execute("""select c.relname, a.attname from pg_attribute a join pg_class c on c.oid = a.attrelid
                       join pg_namespace n on n.oid = c.relnamespace
                       where n.nspname = 'predictions' and c.relkind in ('v', 'r') and a.attnum > 0
                         and not a.attisdropped and col_description(a.attrelid, a.attnum) is null""")
        assert cur.fetchall() == []
    committed = (REPO / "docs" / "prediction-tables.md").read_text(encoding="utf-8")
    assert render(conn) == committed, "docs/prediction-tables.md is stale: run `jobcast docs`"


def idle_reader(db_url):
    """A web app's pooled session left `idle in transaction` after reading the view."""
    reader = psycopg2.connect(db_url, application_name="idle-reader")
    with reader.cursor() as cur:
        cur.execute("select count(*) from predictions.job_salary")
    return reader


def test_retention_never_waits_long_on_an_idle_reader_and_finishes_once_it_has_gone(tmp_path, db_url, conn):
    for i in range(3):
        publish(lambda: psycopg2.connect(db_url), write_batch(tmp_path / f"b{i}", list(range(1, 101))), info())
    reader = idle_reader(db_url)
    try:
        c = psycopg2.connect(db_url)
        t0 = time.perf_counter()
        out = prune(c, "salary", 0, lock_timeout="500ms")
        assert time.perf_counter() - t0 < 3
        assert out["dropped"] == [] and len(out["deferred"]) == 2 and "reader" in out["note"]
        worst = 0.0
        for _ in range(20):  # other readers are served while a detach is pending
            t1 = time.perf_counter()
            assert live(conn)[0] == 100
            worst = max(worst, time.perf_counter() - t1)
        assert worst < 0.5
        again = prune(c, "salary", 0, lock_timeout="200ms")  # the pending detach still cannot finish: nothing breaks
        assert again["dropped"] == [] and again["deferred"] == out["deferred"]
    finally:
        reader.close()
    done = prune(c, "salary", 0)
    c.close()
    assert sorted(done["dropped"]) == sorted(out["deferred"]) and done["deferred"] == []
    assert len(batch_tables(conn)) == 1 and live(conn)[0] == 100


def test_publish_with_a_reader_idle_in_transaction_returns_at_once_and_republishing_works(tmp_path, db_url, conn):
    for i in range(3):
        publish(lambda: psycopg2.connect(db_url), write_batch(tmp_path / f"b{i}", list(range(1, 101 + i))), info(), keep=1)
    stop, seen, errors = threading.Event(), [], []

    def watch():  # a busy reader all along: one whole batch every time, never empty
        w = psycopg2.connect(db_url)
        w.autocommit = True
        try:
            with w.cursor() as cur:
                while not stop.is_set():
                    cur.execute("select count(*), count(distinct batch_id) from predictions.job_salary")
                    seen.append(cur.fetchone())
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            w.close()

    watcher = threading.Thread(target=watch)
    watcher.start()
    reader = idle_reader(db_url)
    try:
        for size in (200, 300):  # publish, then republish the same task at once
            t0 = time.perf_counter()
            out = publish(lambda: psycopg2.connect(db_url), write_batch(tmp_path / f"n{size}", list(range(size))), info(),
                          keep=1)
            assert time.perf_counter() - t0 < 5
            assert out["status"] == "published" and any("retention deferred" in w for w in out["warnings"])
            assert live(conn)[:3] == (size, 1, out["batch_id"])
            assert statuses(conn)[out["batch_id"]] == "published"
    finally:
        reader.close()
        stop.set()
        watcher.join()
    assert not errors and seen and all(n in (102, 200, 300) and k == 1 for n, k in seen), set(seen)
    c = psycopg2.connect(db_url)
    try:  # once the reader has gone, cleanup finishes the retention that was deferred
        done = cleanup(c, "salary", keep=1)
    finally:
        c.close()
    assert done["deferred"] == [] and len(batch_tables(conn)) == 2  # live + 1
    assert len(statuses(conn)) == 5  # nothing lost from the registry


def test_an_error_after_the_swap_leaves_the_new_batch_live_and_the_publish_succeeds_with_a_warning(tmp_path, db_url, conn):
    old = publish(lambda: psycopg2.connect(db_url), write_batch(tmp_path / "a", [1, 2, 3]), info())

    def fail_after_swap(name, _bid):
        if name == "retention":
            raise RuntimeError("injected: retention broke")

    out = publish(lambda: psycopg2.connect(db_url), write_batch(tmp_path / "b", [1, 2, 3, 4]), info(), keep=0,
                  on_phase=fail_after_swap)
    assert out["status"] == "published" and "injected: retention broke" in out["warnings"][0]
    assert live(conn)[:3] == (4, 1, out["batch_id"])
    with conn.cursor() as cur:
        cur.execute("select status, message from predictions.batches where batch_id = %s", (out["batch_id"],))
        status, message = cur.fetchone()
    assert status == "published" and "retention failed after the swap" in message
    assert statuses(conn)[old["batch_id"]] == "superseded"
    # The next publish does the retention that was skipped.
    publish(lambda: psycopg2.connect(db_url), write_batch(tmp_path / "c", [1]), info(), keep=0)
    assert len(batch_tables(conn)) == 1


def test_rollback_never_returns_to_a_batch_whose_data_is_on_its_way_out(tmp_path, db_url, conn):
    first = publish(lambda: psycopg2.connect(db_url), write_batch(tmp_path / "a", [1, 2]), info())
    publish(lambda: psycopg2.connect(db_url), write_batch(tmp_path / "b", [1, 2, 3]), info())
    reader = idle_reader(db_url)
    c = psycopg2.connect(db_url)
    try:
        assert prune(c, "salary", 0, lock_timeout="200ms")["deferred"] == [first["batch_id"]]  # detach pending
        with pytest.raises(PublishError, match="no earlier published batch with data"):
            rollback(c, "salary")
    finally:
        reader.close()
        c.close()
    assert live(conn)[0] == 3
