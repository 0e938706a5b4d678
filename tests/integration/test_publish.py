"""The public contract: validated batches become live atomically; bad batches never do."""

import threading

import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobcast.errors import PublishError
from jobcast.publish.store import BatchInfo, publish

pytestmark = pytest.mark.integration


# A reasons JSON that adds up (base + effects + rest = value), as jobcast.models.reasons writes them.
REASONS = ('{"scale": "log salary (p50)", "value": 15.0, "base": 14.8, "top": [{"name": "prefecture: 東京都", '
           '"effect": 0.15}, {"name": "title: エンジニア", "effect": 0.04}], "rest": 0.01}')


def write_batch(path, job_ids, values=None):
    """A salary batch; `values` are the medians, the interval is p50 x 0.8 .. p50 x 1.25."""
    path.mkdir(parents=True, exist_ok=True)
    values = values if values is not None else [3_000_000.0 + i for i in range(len(job_ids))]
    scaled = lambda f: pa.array([None if v is None else v * f for v in values], pa.float64())  # noqa: E731
    pq.write_table(pa.table({"job_id": pa.array(job_ids, pa.int64()), "salary_p10": scaled(0.8),
                             "salary_p50": pa.array(values, pa.float64()), "salary_p90": scaled(1.25),
                             "reasons": pa.array([REASONS] * len(job_ids), pa.string())}),
                   path / "part-00000.parquet")
    return path


def info(date="2026-10-30", model="m1"):
    return BatchInfo(task="salary", logical_date=date, model_version=model, data_version="d", run_id="test",
                     validation_success=True, report_path="/r.html")


def live(conn):
    with conn.cursor() as cur:
        cur.execute("select count(*), count(distinct batch_id), min(batch_id), min(model_version), min(prediction_date)::text "
                    "from predictions.job_salary")
        return cur.fetchone()


def test_publish_makes_the_batch_readable_through_the_view(tmp_path, db_url, conn):
    out = publish(lambda: psycopg2.connect(db_url), write_batch(tmp_path / "b", list(range(1, 101))), info())
    assert out["status"] == "published"
    assert live(conn) == (100, 1, out["batch_id"], "m1", "2026-10-30")
    with conn.cursor() as cur:
        cur.execute("select salary_p10, salary_p50, salary_p90 from predictions.job_salary where job_id = 7")
        assert cur.fetchone() == (3_000_006.0 * 0.8, 3_000_006.0, 3_000_006.0 * 1.25)
        cur.execute("select status, row_count, validation_success, report_path from predictions.batches where batch_id = %s",
                    (out["batch_id"],))
        assert cur.fetchone() == ("published", 100, True, "/r.html")


def test_republishing_the_same_date_replaces_its_batch_without_duplicates(tmp_path, db_url, conn):
    first = publish(lambda: psycopg2.connect(db_url), write_batch(tmp_path / "a", list(range(1, 51))), info(model="m1"))
    second = publish(lambda: psycopg2.connect(db_url), write_batch(tmp_path / "b", list(range(1, 51))), info(model="m2"))
    assert live(conn) == (50, 1, second["batch_id"], "m2", "2026-10-30")
    with conn.cursor() as cur:
        cur.execute("select status from predictions.batches where batch_id = %s", (first["batch_id"],))
        assert cur.fetchone()[0] == "superseded"


def test_backfill_of_older_date_keeps_newer_batch_live(tmp_path, db_url, conn):
    new = publish(lambda: psycopg2.connect(db_url), write_batch(tmp_path / "new", [1, 2, 3]), info("2026-10-30"))
    old = publish(lambda: psycopg2.connect(db_url), write_batch(tmp_path / "old", [1, 2]), info("2026-10-01"))
    assert old["status"] == "superseded" and "backfill" in old["message"]
    assert live(conn)[:3] == (3, 1, new["batch_id"])
    forced = publish(lambda: psycopg2.connect(db_url), write_batch(tmp_path / "old2", [1, 2]), info("2026-10-01"), force=True)
    assert live(conn)[:3] == (2, 1, forced["batch_id"])


@pytest.mark.parametrize("bad, message", [
    ("duplicate", "duplicate job_id"),
    ("null", "null prediction"),
    ("empty", "zero rows"),
    ("columns", "missing columns"),
])
def test_bad_batches_are_refused_and_the_live_batch_is_unchanged(tmp_path, db_url, conn, bad, message):
    good = publish(lambda: psycopg2.connect(db_url), write_batch(tmp_path / "good", [1, 2, 3]), info())
    path = tmp_path / "bad"
    if bad == "duplicate":
        write_batch(path, [1, 2, 2])
    elif bad == "null":
        write_batch(path, [1, 2, 3], [1e6, None, 2e6])
    elif bad == "empty":
        write_batch(path, [])
    else:
        path.mkdir()
        pq.write_table(pa.table({"job_id": [1], "salary": [1.0]}), path / "part-00000.parquet")
    with pytest.raises(PublishError, match=message):
        publish(lambda: psycopg2.connect(db_url), path, info(date="2026-10-31"))
    assert live(conn)[:3] == (3, 1, good["batch_id"])
    with conn.cursor() as cur:
        cur.execute("select count(*) from pg_tables where schemaname = 'jobcast_internal' and tablename like 'salary_rows_b%%'")
        assert cur.fetchone()[0] == 1  # the refused batch left no table behind


def test_a_second_concurrent_publish_of_the_same_task_fails_clearly(tmp_path, db_url, conn):
    holder = psycopg2.connect(db_url)
    holder.autocommit = True
    try:
        with holder.cursor() as cur:
            cur.execute("select pg_advisory_lock(%s, hashtext('salary'))", (0x6A6F6270,))
        with pytest.raises(PublishError, match="another publish of salary is running"):
            publish(lambda: psycopg2.connect(db_url), write_batch(tmp_path / "b", [1]), info())
    finally:
        holder.close()
    with conn.cursor() as cur:
        cur.execute("select count(*) from predictions.batches")
        assert cur.fetchone()[0] == 0  # nothing half-registered


def test_readers_during_repeated_publishes_see_one_whole_batch(tmp_path, db_url):
    sizes = [500, 800, 300, 1000, 650]
    publish(lambda: psycopg2.connect(db_url), write_batch(tmp_path / "b0", list(range(sizes[0]))), info())
    expected = {}
    with psycopg2.connect(db_url) as c, c.cursor() as cur:
        cur.execute("select batch_id, row_count from predictions.batches")
        expected.update(dict(cur.fetchall()))
    stop, seen, errors = threading.Event(), [], []

    def reader():
        c = psycopg2.connect(db_url)
        c.autocommit = True
        try:
            with c.cursor() as cur:
                while not stop.is_set():
                    cur.execute("select count(*), count(distinct batch_id), min(batch_id) from predictions.job_salary")
                    seen.append(cur.fetchone())
        except Exception as exc:  # noqa: BLE001 - any reader error fails the test
            errors.append(exc)
        finally:
            c.close()

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for i, n in enumerate(sizes[1:], 1):
        out = publish(lambda: psycopg2.connect(db_url), write_batch(tmp_path / f"b{i}", list(range(n))), info())
        expected[out["batch_id"]] = n
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert len(seen) > 10
    for count, distinct, batch in seen:
        assert distinct == 1 and count == expected[batch], (count, distinct, batch)
