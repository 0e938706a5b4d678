"""The `jobcast` command line: thin adapters from arguments to the step functions in jobs/."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Sequence

from jobcast import TASKS
from jobcast.errors import JobcastError

log = logging.getLogger("jobcast")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    for noisy in ("py4j", "great_expectations", "matplotlib", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _ctx(args):
    from jobcast.config import Settings
    from jobcast.context import RunContext, parse_date

    settings = Settings.load()
    kwargs = {"run_id": args.run_id} if getattr(args, "run_id", None) else {}
    return RunContext(logical_date=parse_date(args.date), settings=settings, **kwargs)


def _settings():
    from jobcast.config import Settings

    return Settings.load()


def cmd_db(args) -> int:
    settings = _settings()
    if args.action == "migrate":
        from jobcast.db.conn import connect
        from jobcast.db.migrate import migrate

        conn = connect(settings)
        try:
            applied = migrate(conn, settings.root / "sql" / "migrations")
        finally:
            conn.close()
        state = settings.state_dir / "migrations.json"
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps({"migrations": sorted(p.name for p in (settings.root / "sql" / "migrations").glob("*.sql"))},
                                    indent=2), encoding="utf-8")
        print(f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else " (up to date)"))
        return 0
    if settings.database_url:
        if args.action == "url":
            print(settings.database_url)
            return 0
        print(f"JOBCAST_DATABASE_URL is set: jobcast uses that server and manages none ({args.action} does nothing)")
        return 0
    from jobcast.db.local import cluster_for

    cluster = cluster_for(settings)
    if args.action == "start":
        print(cluster.start())
    elif args.action == "stop":
        cluster.stop()
        print("stopped")
    elif args.action == "status":
        running = cluster.running()
        print(f"{'running' if running else 'stopped'}  port={cluster.port}  data={cluster.data_dir}  url={cluster.url()}")
        return 0 if running else 3
    elif args.action == "url":
        print(cluster.url())
    return 0


def cmd_generate(args) -> int:
    import datetime as dt
    import time

    from jobcast.db.conn import connect
    from jobcast.generate.core import GenerateSpec, load

    settings = _settings()
    p = settings.param("generate")
    spec = GenerateSpec(
        postings=args.postings or int(p["postings"]), days=args.days or int(p["days"]), seed=args.seed if args.seed is not None else int(p["seed"]),
        start_date=dt.date.fromisoformat(args.start_date or str(p["start_date"])), timezone=settings.param("run.timezone"),
    )
    t0 = time.perf_counter()
    conn = connect(settings, application_name="jobcast-generate")
    try:
        counts = load(conn, spec, settings.root / "sql" / "demo" / "app_schema.sql",
                      chunk_postings=getattr(args, "chunk_postings", None) or 100_000, truth=not getattr(args, "no_truth", False))
    finally:
        conn.close()
    manifest = {"postings": spec.postings, "days": spec.days, "seed": spec.seed, "start_date": spec.start_date.isoformat(),
                "end_date": spec.end_date.isoformat(), "rows": counts}
    out = settings.data_dir / "generated.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    print(f"generated {counts['app.job_postings']} postings and {counts['app.events']} events for "
          f"{spec.start_date}..{spec.end_date} in {time.perf_counter() - t0:.1f}s")
    return 0


def cmd_step(args) -> int:
    import importlib

    ctx = _ctx(args)
    module = importlib.import_module(f"jobs.{args.command}")
    kwargs = {}
    if hasattr(args, "task"):
        kwargs["task"] = args.task
    if getattr(args, "model_version", None):
        kwargs["model_version"] = args.model_version
    if getattr(args, "force", False):
        kwargs["force"] = True
    if getattr(args, "layer", None):
        kwargs["layer"] = args.layer
    if getattr(args, "days", None):
        kwargs["days"] = args.days
    if getattr(args, "full", False):
        kwargs["full"] = True
    if getattr(args, "refresh", False):
        kwargs["refresh"] = True
    from jobcast.errors import call_with_retries

    result = call_with_retries(lambda: module.run(ctx, **kwargs), retries=args.retries, delay_s=args.retry_delay,
                               what=f"{args.command} {kwargs.get('task', '')}".strip())
    print(result.summary())
    return 0


def cmd_run(args) -> int:
    from jobs.run import run

    ctx = _ctx(args)
    print(f"jobcast run {ctx.ds} (run_id={ctx.run_id})")
    run(ctx, tasks=tuple(args.tasks), retrain=args.train, force=args.force, full=args.full, refresh=args.refresh,
        retries=args.retries, retry_delay_s=args.retry_delay)
    from jobcast.report import live_summary

    for line in live_summary(ctx.settings, tuple(args.tasks)):
        print(line)
    return 0


def cmd_demo(args) -> int:
    """Fresh-machine demo: local DB, demo data, the daily run, then the same date through Airflow."""
    import subprocess
    import time

    from jobcast.context import RunContext, parse_date
    from jobcast.db.conn import connect, database_url
    from jobcast.db.migrate import migrate
    from jobcast.report import live_summary

    from jobs.run import run

    settings = _settings()
    date = parse_date(args.date or settings.param("run.date"))
    if not settings.database_url:
        from jobcast.db.local import cluster_for

        cluster_for(settings).start()
    conn = connect(settings)
    try:
        migrate(conn, settings.root / "sql" / "migrations")
    finally:
        conn.close()
    cmd_generate(argparse.Namespace(postings=None, days=None, seed=None, start_date=None))
    print(f"jobcast run {date}")
    run(RunContext(logical_date=date, settings=settings))
    if not args.skip_airflow:
        log_file = settings.state_dir / "logs" / f"demo-airflow-{date}.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with log_file.open("w") as fh:
            # One in-process run: SQLite metadata is enough (and is what the embedded defaults promise).
            proc = subprocess.run([sys.executable, "-m", "jobcast.cli", "airflow", "dags", "test", "jobcast_daily", str(date)],
                                  stdout=fh, stderr=subprocess.STDOUT, env={"JOBCAST_AIRFLOW_DB": "sqlite", **os.environ})
        outcome = "success" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
        print(f"airflow dags test jobcast_daily {date}: {outcome} in {time.perf_counter() - t0:.0f}s (log: {log_file})")
        if proc.returncode != 0:
            return 1
    for line in live_summary(settings, TASKS):
        print(line)
    # Model quality next to the best achievable on this data (the generator's truth): bench/quality.py.
    subprocess.run([sys.executable, str(settings.root / "bench" / "quality.py"), "--date", str(date)], check=False)
    print(f"read it yourself: psql {database_url(settings)} -c 'select * from predictions.job_category limit 5'")
    return 0


def cmd_rollback(args) -> int:
    from jobs.rollback import run

    out = run(_settings(), task=args.task, to_batch=args.to)
    print(f"{args.task}: batch {out['live_batch_id']} is live; batch {out['rolled_back_batch_id']} rolled back")
    return 0


def cmd_cleanup(args) -> int:
    from jobs.rollback import cleanup

    settings = _settings()
    for task in args.tasks:
        out = cleanup(settings, task=task)
        print(f"{task}: {len(out['abandoned'])} abandoned batch(es) marked failed {out['abandoned']}; "
              f"data of {len(out['dropped'])} dropped {out['dropped']}"
              + (f"; deferred {out['deferred']}: {out['note']}" if out["deferred"] else ""))
    return 0


def cmd_create_reader(args) -> int:
    from psycopg2 import sql

    from jobcast.db.conn import connect

    password = os.environ.get("JOBCAST_READER_PASSWORD") if args.password_env else None
    conn = connect(_settings())
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("select 1 from pg_roles where rolname = %s", (args.name,))
            verb = "alter" if cur.fetchone() else "create"
            stmt = sql.SQL(verb + " role {} login" + (" password {}" if password else "")).format(
                sql.Identifier(args.name), *( [sql.Literal(password)] if password else []))
            cur.execute(stmt)
            cur.execute(sql.SQL("grant jobcast_reader to {}").format(sql.Identifier(args.name)))
    finally:
        conn.close()
    print(f"{args.name}: login role in jobcast_reader (SELECT on predictions views and batches only)")
    return 0


def cmd_docs(args) -> int:
    from jobcast.db.conn import connect
    from jobcast.docs import render

    settings = _settings()
    conn = connect(settings)
    try:
        text = render(conn)
    finally:
        conn.close()
    out = settings.root / "docs" / "prediction-tables.md"
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}")
    return 0


def cmd_batches(args) -> int:
    from jobcast.report import batches_table

    print(batches_table(_settings(), args.task, args.limit))
    return 0


def cmd_models(args) -> int:
    from jobcast.models import registry
    from jobcast.models.task_models import GATE_METRIC

    settings = _settings()
    if args.action == "list":
        champ = (registry.champion(settings, args.task) or {}).get("version")
        for m in registry.list_versions(settings, args.task):
            mark = "*" if m["version"] == champ else " "
            metric = GATE_METRIC[args.task][0]
            value = float(m["metrics"].get(metric, float("nan")))
            shown = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4f}"
            print(f"{mark} {m['version']:<20} {m['created_at'][:19]}  {metric}={shown}  "
                  f"n_train={m['metrics'].get('n_train')}  code={m.get('code_version')}")
    elif args.action == "show":
        version = args.version or (registry.champion(settings, args.task) or {}).get("version")
        if not version:
            raise JobcastError(f"no champion for {args.task} and no version given")
        print(json.dumps(registry.read_metadata(registry.version_dir(settings, args.task, version)), indent=2, ensure_ascii=False))
    elif args.action == "promote":
        if not args.version:
            raise JobcastError("models promote needs --version")
        registry.set_champion(settings, args.task, args.version, "promoted by hand (jobcast models promote)")
        print(f"{args.task}: champion is now {args.version}")
    return 0


def cmd_airflow(args) -> int:
    """Run the `airflow` CLI against the project-local Airflow (home .airflow/, LocalExecutor, metadata on
    PostgreSQL unless JOBCAST_AIRFLOW_DB=sqlite); migrates the metadata and creates the pool on first use."""
    import subprocess
    from pathlib import Path

    from jobcast.airflow import airflow_env, metadata_url

    settings = _settings()
    user_conn = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    env = {**airflow_env(settings.root, metadata_url=user_conn or metadata_url(settings)), **os.environ}
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")  # `airflow standalone` spawns `airflow` by name
    airflow = str(Path(bindir) / "airflow")
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    if not _airflow_metadata_ready(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]):
        subprocess.run([airflow, "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
        _airflow_setup(airflow, env)
    rest = list(args.airflow_args)
    if rest[:1] == ["--"]:
        rest = rest[1:]
    os.execve(airflow, [airflow, *rest], env)
    return 0  # not reached


def _airflow_setup(airflow: str, env: dict) -> None:
    import subprocess

    from jobcast.airflow import setup_commands

    for cmd in setup_commands(airflow):
        check = cmd[2] != "delete"  # deleting a connection that does not exist yet is fine
        subprocess.run(cmd, env=env, check=check, stdout=subprocess.DEVNULL, stderr=None if check else subprocess.DEVNULL)


def cmd_airflow_init(args) -> int:
    """Create every pool and connection the DAGs use in the Airflow this environment points at (as it is:
    no project-local overrides); docker-compose's airflow-init service runs it after `airflow db migrate`."""
    import shutil
    from pathlib import Path

    from jobcast.airflow import CONNECTIONS, POOLS

    airflow = shutil.which("airflow") or str(Path(sys.executable).parent / "airflow")
    _airflow_setup(airflow, dict(os.environ))
    print(f"airflow: pools {sorted(POOLS)}; connections {sorted(CONNECTIONS)}")
    return 0


def _airflow_metadata_ready(url: str) -> bool:
    """Has `airflow db migrate` run on this metadata database? (Cheap: no Airflow import.)"""
    from pathlib import Path

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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jobcast", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--retries", type=int, default=0, metavar="N",
                   help="retry a step up to N times when it fails with a transient error (connection lost, server "
                        "restart, lock timeout, lost Spark executor, publish lock held); bad input never is")
    p.add_argument("--retry-delay", type=float, default=5.0, metavar="S",
                   help="seconds before the first retry; doubles each time (default 5)")
    sub = p.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="project-local PostgreSQL and migrations")
    dbsub = db.add_subparsers(dest="action", required=True)
    for action in ("start", "stop", "status", "url", "migrate"):
        dbsub.add_parser(action).set_defaults(fn=cmd_db)
    cr = dbsub.add_parser("create-reader", help="a login role for a web app in the read-only group jobcast_reader")
    cr.add_argument("name")
    cr.add_argument("--password-env", action="store_true", help="set the password from $JOBCAST_READER_PASSWORD")
    cr.set_defaults(fn=cmd_create_reader)

    gen = sub.add_parser("generate", help="fill app.* and truth.* with deterministic demo data")
    gen.add_argument("--postings", type=int)
    gen.add_argument("--days", type=int)
    gen.add_argument("--seed", type=int)
    gen.add_argument("--start-date")
    gen.add_argument("--chunk-postings", type=int, default=100_000,
                     help="postings generated and copied at a time: bounds memory on a big board (default 100000)")
    gen.add_argument("--no-truth", action="store_true", help="leave truth.* empty (a benchmark board needs app.* only)")
    gen.set_defaults(fn=cmd_generate)

    def dated(name: str, help_: str, task: bool = False):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--date", required=True, help="logical date YYYY-MM-DD")
        sp.add_argument("--run-id")
        if task:
            sp.add_argument("--task", choices=TASKS, default="salary")
        sp.set_defaults(fn=cmd_step)
        return sp

    dated("extract", "snapshot the source tables for a date to data/raw (an existing snapshot is kept)").add_argument(
        "--refresh", action="store_true",
        help="take the snapshot again from today's source rows (recorded in its manifest); by default it is immutable")
    dated("features", "Spark: raw snapshot -> data/features (reused when current and intact)").add_argument(
        "--force", action="store_true", help="rebuild even when the features are current")
    win = dated("window", "extract + features for every day of a training window that lacks them")
    win.add_argument("--days", type=int, help="window length (default: the longest train window in params.yaml)")
    win.add_argument("--force", action="store_true", help="rebuild every day's features (from the kept snapshots)")
    win.add_argument("--refresh", action="store_true", help="re-take every day's snapshot from today's source rows")
    dated("train", "train a model on a window of features; promote it if it passes the gate", task=True)
    sc = dated("score", "Spark: score every open posting -> data/predictions", task=True)
    sc.add_argument("--model-version")
    sc.add_argument("--full", action="store_true",
                    help="score every posting (default: carry the unchanged ones from the last batch of the same model)")
    dated("validate", "Great Expectations gate on a layer (raw, features, or a task's predictions); Data Docs",
          task=True).add_argument("--layer", choices=["raw", "features", "predictions"], default="predictions")
    dated("publish", "COPY into PostgreSQL and make the batch live", task=True).add_argument(
        "--force", action="store_true", help="replace the live batch even if it is for a newer date")

    run = sub.add_parser("run", help="the whole daily path for one date")
    run.add_argument("--date", required=True)
    run.add_argument("--run-id")
    run.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    run.add_argument("--train", action="store_true", help="retrain before scoring (always done when no champion exists)")
    run.add_argument("--force", action="store_true")
    run.add_argument("--full", action="store_true", help="score every posting, none carried from the last batch")
    run.add_argument("--refresh", action="store_true", help="re-take the date's snapshot (by default an existing one is kept)")
    run.set_defaults(fn=cmd_run)

    demo = sub.add_parser("demo", help="start the local DB, generate demo data, run the daily path (CLI, then Airflow)")
    demo.add_argument("--date", help="logical date (default: params.yaml run.date)")
    demo.add_argument("--skip-airflow", action="store_true")
    demo.set_defaults(fn=cmd_demo)

    rb = sub.add_parser("rollback", help="make the previous (or a named) published batch live again")
    rb.add_argument("task", choices=TASKS)
    rb.add_argument("--to", type=int, help="batch_id to make live")
    rb.set_defaults(fn=cmd_rollback)

    cl = sub.add_parser("cleanup", help="fail batches left behind by interrupted runs; finish pending detaches and retention")
    cl.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    cl.set_defaults(fn=cmd_cleanup)

    sub.add_parser("docs", help="regenerate docs/prediction-tables.md from the database comments").set_defaults(fn=cmd_docs)

    b = sub.add_parser("batches", help="list prediction batches")
    b.add_argument("--task", choices=TASKS)
    b.add_argument("--limit", type=int, default=20)
    b.set_defaults(fn=cmd_batches)

    af = sub.add_parser("airflow", help="the airflow CLI on the project-local Airflow, e.g. `jobcast airflow dags test jobcast_daily 2026-10-30`")
    af.add_argument("airflow_args", nargs=argparse.REMAINDER)
    af.set_defaults(fn=cmd_airflow)

    sub.add_parser("airflow-init", help="create the DAGs' pools and connections in the Airflow of this environment "
                                        "(docker-compose's init)").set_defaults(fn=cmd_airflow_init)

    m = sub.add_parser("models", help="the model registry")
    m.add_argument("action", choices=["list", "show", "promote"])
    m.add_argument("--task", choices=TASKS, default="salary")
    m.add_argument("--version")
    m.set_defaults(fn=cmd_models)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return args.fn(args)
    except Exception as exc:
        from jobcast.errors import is_transient

        if is_transient(exc):  # exit 75 (EX_TEMPFAIL): a scheduler may retry; --retries does it here
            print(f"jobcast: transient error (retry may succeed): {type(exc).__name__}: {' '.join(str(exc).split())}",
                  file=sys.stderr)
            return 75
        if isinstance(exc, JobcastError):
            print(f"jobcast: error: {exc}", file=sys.stderr)
            return 2
        chain, e = [], exc
        while e is not None and len(chain) < 10:
            chain.append(f"{e!r} {e}")
            e = e.__cause__ or e.__context__
        if "No space left on device" in " ".join(chain):  # Spark wraps it in a Java stack trace
            print(f"jobcast: error: no space left on device while running `{args.command}`; nothing already written "
                  "was replaced (outputs are swapped in whole); free space (or set JOBCAST_DATA_DIR) and rerun",
                  file=sys.stderr)
            return 2
        raise
    finally:
        from jobcast.spark import stop_session

        stop_session()


if __name__ == "__main__":
    sys.exit(main())
