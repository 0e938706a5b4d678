"""The bridge from Airflow tasks to jobs/: resolves the run's date and params, returns a small XCom dict.

Imported only inside task callables (never at DAG parse time).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)


SPARK_POOL = "jobcast_spark"  # the pool the DAGs' Spark tasks use (jobcast.airflow_tasks)
SPARK_POOL_SLOTS = 1  # one Spark-heavy task at a time on a 2-core machine: a backfill cannot starve the daily run
# Every pool and connection the DAGs use, declared once: `jobcast airflow` creates them in the project-local
# Airflow, `jobcast airflow-init` in any other (docker-compose's airflow-init service runs it).
POOLS = {SPARK_POOL: (SPARK_POOL_SLOTS, "jobcast Spark-heavy steps (features, window, score, train)")}
CONNECTIONS: dict[str, str] = {}  # conn_id -> URI; none yet: the steps read JOBCAST_* settings, not Airflow connections


def setup_commands(airflow: str) -> list[list[str]]:
    """The `airflow` CLI calls that create POOLS and CONNECTIONS; each is idempotent."""
    cmds = [[airflow, "pools", "set", name, str(slots), desc] for name, (slots, desc) in POOLS.items()]
    for conn_id, uri in CONNECTIONS.items():
        cmds += [[airflow, "connections", "delete", conn_id], [airflow, "connections", "add", conn_id, "--conn-uri", uri]]
    return cmds


def sqlite_metadata_url(home: Path) -> str:
    """SQLite metadata in an AIRFLOW_HOME; the CLI waits up to 30 s for another process's write lock
    (sqlite3's default is 5 s)."""
    return f"sqlite:///{home / 'airflow.db'}?timeout=30"


def airflow_env(root: Path, port: int | None = None, metadata_url: str | None = None) -> dict[str, str]:
    """Environment for a project-local Airflow: home in .airflow/, LocalExecutor, small parallelism.

    `metadata_url` is the SQLAlchemy URL of the metadata database (default: SQLite in the home, which is
    what a one-process `airflow dags test` needs; `jobcast airflow` passes PostgreSQL, see metadata_url()).
    """
    home = root / ".airflow"
    port = port or int(os.environ.get("AIRFLOW__API__PORT", "8080"))
    return {
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",  # the default 32 spawns 32 idle workers (~1.8 GB) on a 2-core box
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url or sqlite_metadata_url(home),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "JOBCAST_HOME": str(root),
        "GX_ANALYTICS_ENABLED": "False",
        "DVC_NO_ANALYTICS": "1",
    }


def with_openlineage(env: dict[str, str]) -> dict[str, str]:
    """OpenLineage for an Airflow environment that has none configured: events (every task's start and end
    with its input and output datasets, jobcast.lineage) appended as JSON lines to
    $AIRFLOW_HOME/openlineage/events.jsonl, namespace `jobcast`. No server is needed; set your own
    AIRFLOW__OPENLINEAGE__TRANSPORT (http, kafka, console ...) to send them elsewhere."""
    out = dict(env)
    if not out.get("AIRFLOW__OPENLINEAGE__TRANSPORT") and not out.get("OPENLINEAGE_URL") \
            and not out.get("AIRFLOW__OPENLINEAGE__CONFIG_PATH"):
        path = Path(out["AIRFLOW_HOME"]) / "openlineage" / "events.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        out["AIRFLOW__OPENLINEAGE__TRANSPORT"] = json.dumps({"type": "file", "log_file_path": str(path), "append": True})
    out.setdefault("AIRFLOW__OPENLINEAGE__NAMESPACE", "jobcast")
    return out


METADATA_DBNAME = "airflow"


def metadata_url(settings) -> str:
    """The Airflow metadata database for `jobcast airflow`: PostgreSQL unless JOBCAST_AIRFLOW_DB=sqlite.

    Airflow's services (scheduler, dag-processor, api-server, triggerer, LocalExecutor workers) write the
    metadata concurrently. SQLite has one writer and fails a writer that would deadlock at once ("database is
    locked", no busy timeout helps): `airflow backfill create` next to a running scheduler hit it in CI. So the
    services use a database `airflow` on the same PostgreSQL server as the shared DB (the project-local
    cluster by default, started here), created on first use. A single-process `airflow dags test` (the demo)
    runs on SQLite and needs no server.
    """
    import psycopg2
    from psycopg2 import sql

    from jobcast.db.conn import database_url
    from jobcast.errors import ConfigError

    choice = os.environ.get("JOBCAST_AIRFLOW_DB", "postgres")
    if choice == "sqlite":
        return sqlite_metadata_url(Path(os.environ.get("AIRFLOW_HOME") or settings.root / ".airflow"))
    if choice != "postgres":
        raise ConfigError(f"JOBCAST_AIRFLOW_DB={choice!r}: expected 'postgres' or 'sqlite'")
    if not settings.database_url:
        from jobcast.db.local import cluster_for

        cluster_for(settings).start()
    shared = psycopg2.extensions.parse_dsn(database_url(settings))
    admin = psycopg2.connect(**{**shared, "dbname": "postgres"})
    try:
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute("select 1 from pg_database where datname = %s", (METADATA_DBNAME,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("create database {}").format(sql.Identifier(METADATA_DBNAME)))
    except psycopg2.Error as exc:
        raise ConfigError(f"cannot create the Airflow metadata database {METADATA_DBNAME!r} on "
                          f"{shared.get('host')}:{shared.get('port')}: {exc}".strip()
                          + "; set AIRFLOW__DATABASE__SQL_ALCHEMY_CONN or JOBCAST_AIRFLOW_DB=sqlite") from exc
    finally:
        admin.close()
    from urllib.parse import quote

    user = quote(shared.get("user", ""), safe="")
    password = f":{quote(shared['password'], safe='')}" if shared.get("password") else ""
    host = shared.get("host", "127.0.0.1")
    port = shared.get("port", "5432")
    return f"postgresql+psycopg2://{user}{password}@{host}:{port}/{METADATA_DBNAME}"


def logical_day(context: dict[str, Any], timezone: str) -> dt.date:
    """The day a run processes: the `date` param if given, else the run's logical date in the board's timezone."""
    from jobcast.context import parse_date

    explicit = (context.get("params") or {}).get("date")
    if explicit:
        return parse_date(explicit)
    logical = context.get("logical_date") or context.get("data_interval_start")
    if logical is None:
        raise ValueError("this run has no logical date (asset-triggered?); set the 'date' param")
    from zoneinfo import ZoneInfo

    return logical.astimezone(ZoneInfo(timezone)).date()


SPARK_CONN_ID = "jobcast_spark"
CHAMPION_ALIAS = "jobcast_champions"  # the train tasks' outlet: each promotion adds an asset event through it


def spark_connect_url(conn_id: str = SPARK_CONN_ID) -> str | None:
    """The Spark Connect server that the Airflow connection `jobcast_spark` (type spark_connect, the Spark
    provider's) names, or None when no such connection is defined: then a task builds its session from the
    JOBCAST_SPARK_* settings, as the CLI does (local[*] by default). `jobcast airflow standalone` and
    docker-compose define it, so their tasks share one server and start no JVM of their own."""
    from airflow.providers.apache.spark.hooks.spark_connect import SparkConnectHook

    from jobcast.errors import ConfigError

    hook = SparkConnectHook(conn_id=conn_id)
    try:
        conn = hook.get_connection(conn_id)
    except Exception as exc:  # noqa: BLE001 - AirflowNotFoundException moved between airflow and the task SDK
        if type(exc).__name__ == "AirflowNotFoundException":
            return None
        raise
    if conn.conn_type != "spark_connect":
        raise ConfigError(f"Airflow connection {conn_id}: type {conn.conn_type!r}; expected spark_connect "
                          "(the Spark provider's Spark Connect type, e.g. host sc://spark-connect, port 15002)")
    return hook.get_connection_url()


def run_step(run: Callable[..., Any], context: dict[str, Any], task: str | None = None, **step_kwargs: Any) -> dict[str, Any]:
    """Call a step (jobs/<step>.py's run) for an Airflow task: the run's logical date and params (the trigger
    form's tasks, pinned model versions, dry run, force, full rescore, snapshot refresh) become its arguments;
    a transient error is raised for Airflow's retries, anything else fails the task at once."""
    from jobcast.config import Settings
    from jobcast.context import RunContext

    step = run.__module__.rsplit(".", 1)[-1]
    params = context.get("params") or {}
    if task is not None and task not in (params.get("tasks") or [task]):
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(f"task {task} not selected in params.tasks={params.get('tasks')}")
    remote = spark_connect_url()
    if remote:  # this task's Spark session is a client of that server, in the session its run's tasks share
        from jobcast.spark import with_session_id

        os.environ["JOBCAST_SPARK_MASTER"] = with_session_id(remote, f"{getattr(context.get('dag_run'), 'dag_id', '')}/{context.get('run_id')}")
    settings = Settings.load()
    ctx = RunContext(logical_date=logical_day(context, settings.param("run.timezone")), settings=settings,
                     run_id=str(context.get("run_id") or "airflow"))
    kwargs: dict[str, Any] = {**step_kwargs, **({} if task is None else {"task": task})}
    if task is not None and step in ("train", "score", "validate", "publish"):
        from jobcast.tasks import get

        skipped = get(task).skipped(ctx, step)
        if skipped:
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(skipped)
    if step == "publish":
        if params.get("dry_run"):
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException("dry run: validated, not published")
        kwargs["force"] = bool(params.get("force"))
    pinned = (params.get("model_versions") or {}).get(task) if task else None
    if step == "score" and pinned:
        kwargs["model_version"] = pinned
    if step == "score" and params.get("full_rescore"):
        kwargs["full"] = True
    if step == "extract" and params.get("refresh_snapshot"):
        kwargs["refresh"] = True
    from jobcast.errors import is_transient

    try:
        result = run(ctx, **kwargs)
    except Exception as exc:
        from airflow.sdk.exceptions import AirflowException, AirflowFailException

        if isinstance(exc, AirflowException) or is_transient(exc):
            log.warning("%s: transient error, Airflow retries it (task retries, exponential backoff): %s: %s",
                        step, type(exc).__name__, exc)
            raise
        # Bad input, config, a failed gate, an unusable model or a bug fails the same way on every try: fail
        # now, skip the retries (jobcast.errors.is_transient is the one classification).
        failed = AirflowFailException(f"{type(exc).__name__}: {exc}")
        failed.report_path = getattr(exc, "report_path", None)
        raise failed from exc
    log.info("%s", result.summary())
    out = result.to_dict()
    try:
        report_lineage(settings, out, context)
    except Exception:  # noqa: BLE001 - lineage is a report: the step's work is done and stays done
        log.warning("%s: lineage not reported", step, exc_info=True)
    return out


class _JobcastLineage:
    """The context Airflow's hook lineage collector files jobcast's datasets under (any object will do)."""


_LINEAGE = _JobcastLineage()


def report_lineage(settings, result: dict[str, Any], context: dict[str, Any]) -> None:
    """Tell Airflow what the step read and wrote (jobcast.lineage): the OpenLineage provider emits these as the
    task's input and output datasets. A promoted model is also an asset event on the alias jobcast_champions
    (the train tasks' outlet), with its version in the extra."""
    from airflow.sdk import Asset, AssetAlias
    from airflow.sdk.lineage import get_hook_lineage_collector

    from jobcast.lineage import step_lineage

    # The collector is one per process; `airflow dags test` runs every task in one process, so a task would
    # report its predecessors' datasets too: this task's lineage starts from a new collector.
    get_hook_lineage_collector.cache_clear()
    inputs, outputs = step_lineage(settings, result)
    collector = get_hook_lineage_collector()
    ids = result.get("ids") or {}
    extra = {k: v for k, v in ids.items() if isinstance(v, (str, int, float, bool))}
    for uri in inputs:
        collector.add_input_asset(_LINEAGE, uri=uri)
    for uri in outputs:
        collector.add_output_asset(_LINEAGE, uri=uri, asset_extra=extra or None)
    if result["step"] == "train" and ids.get("promoted"):
        events = context.get("outlet_events")
        if events is not None:
            champion = Asset(name=f"jobcast_champion_{result['task']}",
                             uri=f"file://{(settings.models_dir / result['task'] / 'champion.json').resolve()}")
            events[AssetAlias(CHAMPION_ALIAS)].add(champion, extra={"task": result["task"],
                                                                    "model_version": ids["model_version"]})


def on_failure(context: dict[str, Any]) -> None:
    """Log what failed, for which date, and where the validation report is when there is one."""
    ti = context.get("task_instance") or context.get("ti")
    exc = context.get("exception")
    report = getattr(exc, "report_path", None)
    log.error("jobcast task %s failed for run %s: %s%s", getattr(ti, "task_id", "?"), context.get("run_id"), exc,
              f" (report: {report})" if report else "")


# ---------------------------------------------------------------------------------------------- bootstrap
def exec_cli(settings, argv: list[str]) -> None:
    """Replace this process with the `airflow` CLI on the project-local Airflow (home .airflow/, LocalExecutor,
    metadata on PostgreSQL unless JOBCAST_AIRFLOW_DB=sqlite); migrates the metadata and creates the pools and
    connections on first use."""
    import subprocess
    import sys

    user_conn = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    env = with_openlineage({**airflow_env(settings.root, metadata_url=user_conn or metadata_url(settings)), **os.environ})
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")  # `airflow standalone` spawns `airflow` by name
    airflow = str(Path(bindir) / "airflow")
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    if not metadata_ready(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]):
        subprocess.run([airflow, "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
        setup(airflow, env)
    rest = list(argv)
    if rest[:1] == ["--"]:
        rest = rest[1:]
    if rest[:1] in (["standalone"], ["scheduler"]) and env.get("JOBCAST_AIRFLOW_SPARK", "connect") == "connect" \
            and not env.get("AIRFLOW_CONN_" + SPARK_CONN_ID.upper()):
        # A scheduler runs each task in its own process: one Spark Connect server for all of them, instead of
        # a JVM per task (JOBCAST_AIRFLOW_SPARK=local keeps that). `airflow dags test` runs the tasks in one
        # process, which starts one JVM anyway: it is left as it is.
        from jobcast import spark_connect

        server = spark_connect.server_for(settings)
        print(f"spark connect: {spark_connect.start(server)}", file=sys.stderr)
        env["AIRFLOW_CONN_" + SPARK_CONN_ID.upper()] = json.dumps(
            {"conn_type": "spark_connect", "host": "127.0.0.1", "port": server.port})
    os.execve(airflow, [airflow, *rest], env)


def setup(airflow: str, env: dict) -> None:
    """Create POOLS and CONNECTIONS through the `airflow` CLI in the Airflow `env` points at."""
    import subprocess

    for cmd in setup_commands(airflow):
        check = cmd[2] != "delete"  # deleting a connection that does not exist yet is fine
        subprocess.run(cmd, env=env, check=check, stdout=subprocess.DEVNULL, stderr=None if check else subprocess.DEVNULL)


def init_current() -> str:
    """Every pool and connection the DAGs use, in the Airflow this environment points at (as it is: no
    project-local overrides); docker-compose's airflow-init service runs it after `airflow db migrate`."""
    import shutil
    import sys

    airflow = shutil.which("airflow") or str(Path(sys.executable).parent / "airflow")
    setup(airflow, dict(os.environ))
    return f"airflow: pools {sorted(POOLS)}; connections {sorted(CONNECTIONS)}"


def metadata_ready(url: str) -> bool:
    """Has `airflow db migrate` run on this metadata database? (Cheap: no Airflow import.)"""
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):].split("?")[0]).exists()
    if url.startswith(("postgresql://", "postgresql+psycopg2://", "postgres://")):
        import psycopg2

        with psycopg2.connect(url.replace("+psycopg2", "", 1)) as conn, conn.cursor() as cur:
            cur.execute("select to_regclass('public.alembic_version') is not null")
            ready = cur.fetchone()[0]
        conn.close()
        return ready
    return True  # another backend: the user runs `airflow db migrate` themselves
