"""One error taxonomy inside a real Airflow run: a transient fault is retried and the run succeeds; bad input
fails at once with no retry.

The DAG here wires the same `extract` task the daily DAG uses, with the same retry settings
(`jobcast.airflow_tasks.default_args`, first delay 1 s by JOBCAST_RETRY_DELAY_S), so each case costs one
short `airflow dags test` rather than a whole daily run. The faults are real: the server terminates the
extract's connection in the middle of its query; the source holds a duplicate job_id.
"""

import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg2
import pytest

from conftest import SMALL_DATE
from test_jobcast_daily import make_airflow_home

pytestmark = pytest.mark.e2e

DAG = '''
import pendulum
from airflow.sdk import dag

from jobcast.airflow_tasks import default_args, extract


@dag(dag_id="jobcast_extract_only", schedule=None, start_date=pendulum.datetime(2026, 9, 1, tz="Asia/Tokyo"),
     catchup=False, default_args=default_args(retries=2, delay_s=120))
def jobcast_extract_only():
    extract()


jobcast_extract_only()
'''


@pytest.fixture(scope="module")
def extract_only_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-retries")
    dags = home / "dags"
    dags.mkdir()
    (dags / "jobcast_extract_only.py").write_text(DAG, encoding="utf-8")
    env = make_airflow_home(home)
    return {**env, "AIRFLOW__CORE__DAGS_FOLDER": str(dags), "JOBCAST_RETRY_DELAY_S": "1"}


def source_view(db_url, schema, postings_sql):
    """A source schema over app.*: events as they are, job_postings as `postings_sql` says."""
    with psycopg2.connect(db_url) as c, c.cursor() as cur:
        cur.execute(f"create schema {schema}")
        cur.execute(f"create view {schema}.events as select * from app.events")
        cur.execute(f"create view {schema}.job_postings as {postings_sql}")


def run_dag(env, date):
    proc = subprocess.run([str(Path(sys.executable).parent / "airflow"), "dags", "test", "jobcast_extract_only", date],
                          env=env, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    db = sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db")
    try:
        tries = db.execute("select state, try_number from task_instance where dag_id = 'jobcast_extract_only' "
                           "and task_id = 'extract' order by start_date desc limit 1").fetchone()
    finally:
        db.close()
    return log, tries


def test_a_connection_dropped_mid_extract_is_retried_and_the_airflow_run_succeeds(extract_only_home, settings, generated,
                                                                                   db_url):
    # Every read of job_postings takes a second: long enough to drop the connection in the middle of it.
    source_view(db_url, "slow", "with pause as materialized (select pg_sleep(1)) select p.* from app.job_postings p, pause")
    killed, done = [], threading.Event()

    def drop_the_first_extract():
        c = psycopg2.connect(db_url)
        c.autocommit = True
        try:
            with c.cursor() as cur:
                while not killed and not done.is_set():
                    cur.execute("select pid from pg_stat_activity where application_name = 'jobcast-extract' "
                                "and state = 'active'")
                    row = cur.fetchone()
                    if row:
                        cur.execute("select pg_terminate_backend(%s)", row)
                        killed.append(row[0])
                    time.sleep(0.02)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            killed.append(exc)
        finally:
            c.close()

    killer = threading.Thread(target=drop_the_first_extract)
    killer.start()
    env = {**extract_only_home, **{k: v for k, v in os.environ.items() if k.startswith("JOBCAST_")},
           "JOBCAST_SOURCE_SCHEMA": "slow"}
    try:
        log, tries = run_dag(env, SMALL_DATE)
    finally:
        done.set()
        killer.join()
    assert killed and isinstance(killed[0], int), (killed, log[-3000:])
    assert "TransientError" in log and "new_state=up_for_retry" in log, log[-3000:]
    assert tries == ("success", 2), (tries, log[-3000:])  # failed once, retried once, succeeded
    assert (settings.data_dir / "raw" / "job_postings" / f"dt={SMALL_DATE}" / "_manifest.json").is_file()


def test_a_duplicate_job_id_fails_the_airflow_task_at_once_with_no_retry(extract_only_home, settings, generated, db_url):
    source_view(db_url, "dup", "select * from app.job_postings union all "
                               "(select * from app.job_postings order by job_id limit 1)")
    env = {**extract_only_home, **{k: v for k, v in os.environ.items() if k.startswith("JOBCAST_")},
           "JOBCAST_SOURCE_SCHEMA": "dup"}
    log, tries = run_dag(env, SMALL_DATE)
    assert "duplicate job_id" in log and "InputDataError" in log, log[-3000:]
    assert "new_state=up_for_retry" not in log and "new_state=failed" in log
    assert tries == ("failed", 1), tries
    assert not (settings.data_dir / "raw" / "job_postings" / f"dt={SMALL_DATE}").exists()  # nothing written
