"""The Airflow DAG, loaded by a real DagBag and run once with `airflow dags test` against a real database."""

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest

from jobcast.tasks import get, names

from conftest import REPO, SMALL_DATE

pytestmark = pytest.mark.e2e


def make_airflow_home(home: Path, metadata: str = "sqlite") -> dict:
    """A private AIRFLOW_HOME prepared the way users get it: `jobcast airflow` migrates and creates the pool.

    metadata="sqlite" is the demo's one-process `dags test`; "postgres" is what `jobcast airflow` picks by
    default for the services: a database `airflow` on the shared DB's server (here the test cluster)."""
    from jobcast.airflow import airflow_env, metadata_url, sqlite_metadata_url, with_openlineage
    from jobcast.config import Settings

    from conftest import free_port

    port = free_port()
    url = sqlite_metadata_url(home) if metadata == "sqlite" else metadata_url(Settings.load())
    env = with_openlineage({**os.environ, **airflow_env(REPO, port=port, metadata_url=url), "AIRFLOW_HOME": str(home)})
    proc = subprocess.run([str(Path(sys.executable).parent / "jobcast"), "airflow", "pools", "list"], env=env,
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and "jobcast_spark" in proc.stdout, proc.stderr[-2000:]
    return env


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory):
    return make_airflow_home(tmp_path_factory.mktemp("airflow"))


def test_dagbag_loads_the_daily_dag_without_errors(airflow_home):
    out = subprocess.run([sys.executable, str(Path(__file__).parent / "dagbag_report.py"), str(REPO / "dags")],
                         env=airflow_home, capture_output=True, text=True, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["import_errors"] == {}
    dag = report["dags"]["jobcast_daily"]
    tasks = sorted(names())  # one branch per declared prediction task
    prepare = {"extract": ["validate_raw"], "validate_raw": ["features"], "features": ["validate_features"]}
    assert dag["downstream"] == {
        **prepare, "validate_features": [f"score_{t}" for t in tasks],  # the predictions branch out in parallel
        **{f"score_{t}": [f"validate_{t}"] for t in tasks}, **{f"validate_{t}": [f"publish_{t}"] for t in tasks},
        **{f"publish_{t}": [] for t in tasks}}
    assert report["parse_seconds"] < 0.5, report["parse_seconds"]  # both DAG files: no work at import time
    train = report["dags"]["jobcast_train"]
    assert train["downstream"] == {**prepare, "validate_features": ["window"], "window": [f"train_{t}" for t in tasks],
                                   **{f"train_{t}": [] for t in tasks}}
    assert set(train["params"]) == {"tasks", "date"} and train["max_active_runs"] == 1
    assert set(dag["params"]) == {"tasks", "date", "model_versions", "force", "dry_run", "full_rescore", "refresh_snapshot"}
    assert dag["params"]["full_rescore"]["default"] is False
    assert dag["params"]["force"]["default"] is False and dag["params"]["tasks"]["default"] == list(names())
    assert dag["max_active_runs"] == 1 and dag["catchup"] is False and dag["retries"] == 3


def test_every_pool_and_connection_the_dags_use_is_created_by_the_compose_init(airflow_home, tmp_path):
    import yaml

    from jobcast.airflow import CONNECTIONS, POOLS

    out = subprocess.run([sys.executable, str(Path(__file__).parent / "dagbag_report.py"), str(REPO / "dags")],
                         env=airflow_home, capture_output=True, text=True, check=True)
    dags = json.loads(out.stdout.strip().splitlines()[-1])["dags"]
    used_pools = {p for d in dags.values() for p in d["pools"]} - {"default_pool"}
    used_conns = {c for d in dags.values() for c in d["conn_ids"]}
    assert used_pools == {"jobcast_spark"} and used_pools <= set(POOLS)
    assert used_conns <= set(CONNECTIONS), used_conns - set(CONNECTIONS)
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert "jobcast airflow-init" in " ".join(compose["services"]["airflow-init"]["command"])
    # And `jobcast airflow-init` really creates them, in an Airflow that has none: a fresh SQLite metadata DB.
    home = tmp_path / "fresh"
    home.mkdir()
    env = {**airflow_home, "AIRFLOW_HOME": str(home),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}"}
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    assert "jobcast_spark" not in subprocess.run([airflow, "pools", "list"], env=env, capture_output=True, text=True).stdout
    proc = subprocess.run([str(Path(sys.executable).parent / "jobcast"), "airflow-init"], env=env, capture_output=True,
                          text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    pools = subprocess.run([airflow, "pools", "list"], env=env, capture_output=True, text=True).stdout
    assert all(p in pools for p in used_pools), pools


def dags_test(env, dag_id, date):
    proc = subprocess.run([str(Path(sys.executable).parent / "airflow"), "dags", "test", dag_id, date],
                          env=env, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "state=success" in log
    return log


@pytest.fixture
def spark_connect(settings, monkeypatch):
    """A Spark Connect server started the way users start one (`jobcast spark start`), on a free port."""
    from conftest import free_port

    jobcast = str(Path(sys.executable).parent / "jobcast")
    monkeypatch.setenv("JOBCAST_SPARK_CONNECT_PORT", str(free_port()))
    proc = subprocess.run([jobcast, "spark", "start"], capture_output=True, text=True, cwd=REPO, timeout=180)
    assert proc.returncode == 0 and "running: sc://127.0.0.1:" in proc.stdout, proc.stdout + proc.stderr
    try:
        yield int(os.environ["JOBCAST_SPARK_CONNECT_PORT"])
    finally:
        subprocess.run([jobcast, "spark", "stop"], capture_output=True, text=True, cwd=REPO, timeout=120)


def test_airflow_dags_test_trains_then_runs_the_daily_dag_green(airflow_home, settings, generated, db_url, spark_connect):
    """Both DAGs' Spark steps (features, window, train, score with mapInPandas, validate) run as clients of one
    Spark Connect server that the Airflow connection jobcast_spark names: no task starts a JVM of its own."""
    conn = json.dumps({"conn_type": "spark_connect", "host": "127.0.0.1", "port": spark_connect})
    env = {**airflow_home, **{k: v for k, v in os.environ.items() if k.startswith("JOBCAST_")},
           "AIRFLOW_CONN_JOBCAST_SPARK": conn}
    log = dags_test(env, "jobcast_train", SMALL_DATE)  # the daily DAG scores with the champions
    assert f"spark: Spark Connect client of sc://127.0.0.1:{spark_connect}" in log and "spark: local session" not in log
    assert log.count("promoted: no champion yet") >= len(names())  # each model's gate says why, in its task log
    for task in names():
        assert (settings.models_dir / task / "champion.json").is_file()
    log = dags_test(env, "jobcast_daily", SMALL_DATE)
    assert "spark: Spark Connect client of" in log and "spark: local session" not in log
    with psycopg2.connect(db_url) as c, c.cursor() as cur:
        for view in (get(t).view for t in names()):
            cur.execute(f"select count(*), count(distinct batch_id), min(prediction_date)::text from predictions.{view}")
            n, batches, pdate = cur.fetchone()
            assert n > 0 and batches == 1 and pdate == SMALL_DATE, view
        cur.execute("select distinct run_id from predictions.batches where status = 'published'")
        run_ids = [r[0] for r in cur.fetchall()]
        cur.execute("select model_version from predictions.job_salary limit 1")
        salary_model = cur.fetchone()[0]
    assert len(run_ids) == 1 and run_ids[0].startswith("manual__")  # the one Airflow run that made all of them
    check_lineage(Path(env["AIRFLOW_HOME"]), settings, salary_model)


def check_lineage(home: Path, settings, salary_model: str) -> None:
    """OpenLineage events (the provider's file transport, jobcast.airflow.with_openlineage) name each task's
    input and output datasets; a promoted model is an Airflow asset event with its version."""
    import sqlite3

    events = [json.loads(line) for line in (home / "openlineage" / "events.jsonl").read_text().splitlines() if line.strip()]
    done = {e["job"]["name"]: e for e in events if e["eventType"] == "COMPLETE" and e["job"]["namespace"] == "jobcast"}

    def datasets(job: str, side: str) -> list[str]:
        return [d["name"] for d in done[job][side]]

    data, models, day = settings.data_dir.resolve(), settings.models_dir.resolve(), f"dt={SMALL_DATE}"
    assert any(n.endswith("app.job_postings") for n in datasets("jobcast_daily.extract", "inputs"))
    assert f"{data}/raw/job_postings/{day}" in datasets("jobcast_daily.extract", "outputs")
    assert f"{data}/raw/events/{day}" in datasets("jobcast_daily.features", "inputs")
    assert datasets("jobcast_daily.features", "outputs") == [f"{data}/features/{day}"]
    for task in names():
        assert f"{data}/features/{day}" in datasets(f"jobcast_daily.score_{task}", "inputs")
        assert datasets(f"jobcast_daily.score_{task}", "outputs") == [f"{data}/predictions/{task}/{day}"]
        assert datasets(f"jobcast_daily.validate_{task}", "inputs") == [f"{data}/predictions/{task}/{day}"]
        inputs = datasets(f"jobcast_daily.publish_{task}", "inputs")  # the batch, and what it archives for reproduce
        assert inputs[0] == f"{data}/predictions/{task}/{day}" and f"{data}/raw/job_postings/{day}" in inputs
        assert any(n.startswith(f"{models}/{task}/") for n in inputs)
        published = done[f"jobcast_daily.publish_{task}"]["outputs"]
        assert [d["namespace"].split("://")[0] for d in published] == ["postgres"]
        assert published[0]["name"].endswith(f"predictions.{get(task).view}")
        assert any(n.startswith(f"{data}/features/dt=") for n in datasets(f"jobcast_train.train_{task}", "inputs"))
    # which model version the batch used: the score task read that version's directory
    assert f"{models}/salary/{salary_model}" in datasets("jobcast_daily.score_salary", "inputs")
    meta = sqlite3.connect(home / "airflow.db")
    rows = meta.execute("select a.name, e.extra from asset_event e join asset a on a.id = e.asset_id "
                        "where a.name like 'jobcast_champion_%'").fetchall()
    meta.close()
    promoted = {name: json.loads(extra) for name, extra in rows}
    assert set(promoted) == {f"jobcast_champion_{t}" for t in names()}
    assert promoted["jobcast_champion_salary"]["model_version"] == salary_model


def test_a_bad_input_fails_the_right_airflow_task_names_the_expectation_and_publishes_nothing(
        airflow_home, settings, champions, db_url):
    env = {**airflow_home, **{k: v for k, v in os.environ.items() if k.startswith("JOBCAST_")}}
    with psycopg2.connect(db_url) as c, c.cursor() as cur:  # the app starts logging a new event type that day
        cur.execute("update app.events set event_type = 'click' where event_id in (select event_id from app.events "
                    "where occurred_at >= '2026-09-29T15:00:00Z' and occurred_at < '2026-09-30T15:00:00Z' limit 5)")
    # The day's snapshot exists (the champions' window): the data engineer re-takes it from the trigger form.
    proc = subprocess.run([str(Path(sys.executable).parent / "airflow"), "dags", "test", "jobcast_daily", SMALL_DATE,
                           "--conf", json.dumps({"refresh_snapshot": True})],
                          env=env, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert "state=failed" in log and "state=success" not in log.split("DagRun Finished")[-1][:300]
    assert "validate_raw" in log and "expect_column_values_to_be_in_set(column=event_type)" in log  # what and where
    assert "report: " in log and "/reports/gx/" in log  # the failure callback points at the Data Docs page
    assert "new_state=up_for_retry" not in log and "new_state=failed" in log  # bad data fails at once, retries are for transient errors
    with psycopg2.connect(db_url) as c, c.cursor() as cur:
        cur.execute("select count(*) from predictions.batches")
        assert cur.fetchone()[0] == 0  # nothing reached the web apps
