"""Shared fixtures: one real PostgreSQL server per session (started by the project's own code), a fresh
database per test cloned from a migrated template, a local[2] Spark session, and per-test data dirs."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Before anything imports pyspark / GX / airflow.
os.environ.setdefault("JOBCAST_SPARK_MASTER", "local[2]")
os.environ["GX_ANALYTICS_ENABLED"] = "False"
os.environ["DVC_NO_ANALYTICS"] = "1"
os.environ["JOBCAST_SPARK_CONF"] = "spark.sql.shuffle.partitions=2"
# publish archives each batch's inputs to a DVC remote (jobcast.archive): never the checkout's dvc-storage/.
# A remote of the session's own, removed when the session ends (each run's batches took ~80 MB of /tmp).
if "JOBCAST_DVC_REMOTE" not in os.environ:
    os.environ["JOBCAST_DVC_REMOTE"] = tempfile.mkdtemp(prefix="jobcast-test-dvc-remote-")
    atexit.register(shutil.rmtree, os.environ["JOBCAST_DVC_REMOTE"], True)


# Headless Chromium as root on a closed network (background networking off: its lookups are refused anyway).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def chromium() -> str:
    """Debian's chromium, which `make test` installs (scripts/bootstrap --browser): a missing browser fails."""
    import shutil

    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "no chromium on PATH: run `make test` (scripts/bootstrap --browser installs it)"
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory):
    from jobcast.db.local import LocalCluster, find_bindir

    cluster = LocalCluster(
        base_dir=tmp_path_factory.mktemp("pg") / "cluster", port=free_port(), bindir=find_bindir(os.environ.get("JOBCAST_PG_BINDIR")),
        server_options=("-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off", "-c max_connections=200"),
    )
    cluster.start()
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="session")
def template_db(pg_cluster):
    import psycopg2

    from jobcast.db.migrate import migrate

    admin = psycopg2.connect(pg_cluster.url("postgres"))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("create database jobcast_template")
    admin.close()
    conn = psycopg2.connect(pg_cluster.url("jobcast_template"))
    migrate(conn, REPO / "sql" / "migrations")
    conn.close()
    return "jobcast_template"


@contextmanager
def _scratch_database(pg_cluster, template: str | None):
    import psycopg2

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(pg_cluster.url("postgres"))
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'create database "{name}"' + (f' template "{template}"' if template else ""))
        yield pg_cluster.url(name)
        with admin.cursor() as cur:
            cur.execute(f'drop database if exists "{name}" with (force)')
    finally:
        admin.close()


@pytest.fixture
def db_url(pg_cluster, template_db):
    """A fresh, migrated database for this test only."""
    with _scratch_database(pg_cluster, template_db) as url:
        yield url


@pytest.fixture
def empty_db_url(pg_cluster):
    """A fresh database with no migrations applied (for tests of the migrations themselves)."""
    with _scratch_database(pg_cluster, None) as url:
        yield url


@pytest.fixture
def settings(tmp_path, db_url, monkeypatch):
    """Settings for a project rooted at the repo (sql/, expectations/, params.yaml) with data elsewhere."""
    from jobcast.config import Settings

    for key, sub in (("JOBCAST_DATA_DIR", "data"), ("JOBCAST_MODELS_DIR", "models"),
                     ("JOBCAST_REPORTS_DIR", "reports"), ("JOBCAST_STATE_DIR", "state")):
        monkeypatch.setenv(key, str(tmp_path / sub))
    monkeypatch.setenv("JOBCAST_DATABASE_URL", db_url)
    monkeypatch.setenv("JOBCAST_HOME", str(REPO))
    monkeypatch.setenv("JOBCAST_PARAMS_OVERRIDE", str(REPO / "tests" / "params-small.yaml"))
    return Settings.load(REPO)


@pytest.fixture
def conn(db_url):
    import psycopg2

    c = psycopg2.connect(db_url)
    c.autocommit = True
    yield c
    c.close()


SMALL = {"postings": 3000, "days": 30, "seed": 11, "start_date": "2026-09-01"}
SMALL_DATE = "2026-09-30"


@pytest.fixture
def generated(settings):
    """Small deterministic demo data in this test's database."""
    import datetime as dt

    from jobcast.db.conn import connect
    from jobcast.generate.core import GenerateSpec, load

    spec = GenerateSpec(SMALL["postings"], SMALL["days"], SMALL["seed"], dt.date.fromisoformat(SMALL["start_date"]))
    c = connect(settings)
    try:
        load(c, spec, REPO / "sql" / "demo" / "app_schema.sql")
    finally:
        c.close()
    return spec


def with_params(settings, **changes):
    """Settings whose params differ by dotted keys, e.g. with_params(s, **{"train.category.num_boost_round": 1})."""
    import copy
    import dataclasses

    params = copy.deepcopy(settings.params)
    for dotted, value in changes.items():
        node = params
        *path, last = dotted.split(".")
        for part in path:
            node = node[part]
        node[last] = value
    return dataclasses.replace(settings, params=params)


def create_source_tables(cur, schema: str) -> None:
    """A board's own schema with the two source tables of docs/source-contract.md (for hand-made boards)."""
    cur.execute(f"create schema {schema}")
    cur.execute(f"""create table {schema}.job_postings (job_id bigint primary key, company_id bigint not null, title text,
                    description text, prefecture text not null, employment_type text not null, category text,
                    salary_min bigint, salary_max bigint, posted_at timestamptz not null, closed_at timestamptz)""")
    cur.execute(f"""create table {schema}.events (event_id bigint primary key, job_id bigint not null,
                    session_id bigint not null, event_type text not null, occurred_at timestamptz not null)""")


def make_ctx(settings, date: str = SMALL_DATE, run_id: str | None = None):
    from jobcast.context import RunContext, parse_date

    return RunContext(logical_date=parse_date(date), settings=settings, run_id=run_id or f"test__{uuid.uuid4().hex[:8]}")


@pytest.fixture
def champions(settings, generated, tmp_path_factory):
    """Champion models for all three tasks on the small generated data, plus the training window's raw
    snapshots and features, in this test's dirs. Built once per session (the data are deterministic, every
    test database holds the same rows) and copied, so tests that only need models don't retrain."""
    import shutil

    from jobcast.tasks import names as task_names

    cache = tmp_path_factory.getbasetemp() / "champions-cache"
    if not cache.is_dir():
        from jobs import train, window

        ctx = make_ctx(settings)
        window.run(ctx)
        for task in task_names():
            train.run(ctx, task=task)
        tmp = cache.with_suffix(".tmp")
        shutil.copytree(settings.models_dir, tmp / "models")
        for sub in ("raw", "features"):
            shutil.copytree(settings.data_dir / sub, tmp / "data" / sub)
        tmp.rename(cache)
        return settings
    shutil.copytree(cache / "models", settings.models_dir, dirs_exist_ok=True)
    for sub in ("raw", "features"):
        shutil.copytree(cache / "data" / sub, settings.data_dir / sub, dirs_exist_ok=True)
    return settings
