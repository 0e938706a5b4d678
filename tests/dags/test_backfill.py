"""A real Airflow (standalone: scheduler, api-server, dag-processor, triggerer; metadata on PostgreSQL) running
`airflow backfill create` over two past dates, side by side: one batch per date, the newer live batch stays live.
As `jobcast airflow standalone` runs it by default, every Spark task is a client of one Spark Connect server
(the connection jobcast_spark), not a JVM of its own. (Two dates, not three: a third added no case.)"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psycopg2
import pytest

from conftest import REPO, make_ctx
from jobs import run
from test_jobcast_daily import make_airflow_home

pytestmark = pytest.mark.e2e

AIRFLOW = str(Path(sys.executable).parent / "airflow")


def airflow(env, *args, timeout=120):
    return subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_backfill_over_two_dates_keeps_the_newer_batch_live(tmp_path, settings, champions, db_url):
    # Salary only (the trigger form's `tasks` param, as run conf): the other branches are the same code, skipped.
    live = run.run(make_ctx(settings, "2026-09-30"), tasks=("salary",), echo=lambda _: None)[-1].ids["batch_id"]
    with psycopg2.connect(db_url) as c, c.cursor() as cur:
        # Every posting closes in October, so the interval that unpausing schedules (yesterday, as catchup is
        # off) finds no open postings and fails at extract instead of publishing a newer batch.
        cur.execute("update app.job_postings set closed_at = '2026-10-05' where closed_at is null")
    # The services on PostgreSQL metadata, as `jobcast airflow` runs them (SQLite failed `backfill create`
    # with "database is locked" next to a running scheduler).
    env = {**make_airflow_home(tmp_path / "airflow", metadata="postgres"), **{k: v for k, v in os.environ.items() if k.startswith("JOBCAST_")}}
    port = env["AIRFLOW__API__PORT"]
    from conftest import free_port

    env["JOBCAST_SPARK_CONNECT_PORT"] = str(free_port())
    log = (tmp_path / "standalone.log").open("w")
    standalone = subprocess.Popen([str(Path(sys.executable).parent / "jobcast"), "airflow", "standalone"], env=env,
                                  stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                health = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=5))
                if health["scheduler"]["status"] == "healthy" and health["dag_processor"]["status"] == "healthy":
                    break
            except OSError:
                pass
            assert standalone.poll() is None and time.monotonic() < deadline, (tmp_path / "standalone.log").read_text()[-3000:]
            time.sleep(2)
        while "jobcast_daily" not in airflow(env, "dags", "list").stdout:  # parsed by the dag-processor
            assert time.monotonic() < deadline
            time.sleep(2)
        # Two runs side by side: the jobcast_spark pool still runs one Spark task at a time, GX validations
        # take turns on the report store's lock, and each date's publish is refused as older than the live batch.
        created = airflow(env, "backfill", "create", "--dag-id", "jobcast_daily", "--from-date", "2026-09-27",
                          "--to-date", "2026-09-29", "--max-active-runs", "2",
                          "--dag-run-conf", json.dumps({"tasks": ["salary"]}))
        assert created.returncode == 0, created.stderr[-2000:]
        assert airflow(env, "dags", "unpause", "jobcast_daily").returncode == 0  # backfills of a paused DAG wait
        deadline = time.monotonic() + 900
        while True:
            out = airflow(env, "dags", "list-runs", "jobcast_daily", "-o", "json").stdout
            rows = [line for line in out.splitlines() if line.startswith("[{") or line.strip() == "[]"]
            runs = json.loads(rows[-1]) if rows else []  # log warnings may precede the JSON line
            backfills = [r for r in runs if r["run_id"].startswith("backfill__")]
            if len(backfills) == 2 and all(r["state"] in ("success", "failed") for r in backfills):
                break
            assert time.monotonic() < deadline, runs
            time.sleep(5)
        assert [r["state"] for r in backfills] == ["success"] * 2, backfills
    finally:
        os.killpg(standalone.pid, signal.SIGTERM)
        standalone.wait(60)
        stopped = subprocess.run([str(Path(sys.executable).parent / "jobcast"), "spark", "stop"], env=env, cwd=REPO,
                                 capture_output=True, text=True, timeout=120)
    # Stopping by process group, and the Spark server with `jobcast spark stop`, leaves nothing behind.
    assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stderr
    left = subprocess.run(["pgrep", "-f", f"AIRFLOW_HOME={tmp_path}|{tmp_path}/airflow|binding.port={env['JOBCAST_SPARK_CONNECT_PORT']}"],
                          capture_output=True, text=True)
    assert left.stdout.strip() == ""
    task_logs = "\n".join(p.read_text(errors="replace") for p in (tmp_path / "airflow" / "logs").rglob("*.log")
                           if "run_id=backfill__" in str(p))
    assert "spark: Spark Connect client of sc://127.0.0.1:" in task_logs and "spark: local session" not in task_logs

    with psycopg2.connect(db_url) as c, c.cursor() as cur:
        cur.execute("""select logical_date::text, status, message from predictions.batches
                       where run_id like 'backfill__%%' order by logical_date""")
        rows = cur.fetchall()
        cur.execute("select b.batch_id, b.logical_date::text from jobcast_internal.current_batch c "
                    "join predictions.batches b using (batch_id) where c.task = 'salary'")
        live_now, live_date = cur.fetchone()
    assert [r[0] for r in rows] == ["2026-09-28", "2026-09-29"]  # one batch per date
    assert all(status == "superseded" and "backfill" in message for _, status, message in rows)
    assert (live_now, live_date) == (live, "2026-09-30")  # the newer batch stayed live throughout
