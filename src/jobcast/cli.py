"""The `jobcast` command line: thin adapters from arguments to the functions that do the work (the steps in
jobs/, and jobcast.generate, jobcast.db, jobcast.airflow, jobcast.demo)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Sequence

from jobcast import tasks
from jobcast.entry import guarded, setup_logging
from jobcast.errors import JobcastError

log = logging.getLogger("jobcast")


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
        from jobcast.db.migrate import migrate_project

        applied = migrate_project(settings)
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


def cmd_spark(args) -> int:
    from jobcast import spark_connect

    server = spark_connect.server_for(_settings())
    if args.action != "start":
        print(f"spark connect: {(spark_connect.stop if args.action == 'stop' else spark_connect.status)(server)}")
        return 0
    print(f"spark connect: {spark_connect.start(server, foreground=args.foreground)}")
    print(f"steps use it with JOBCAST_SPARK_MASTER={server.url}; Airflow tasks through the connection jobcast_spark "
          f"(type spark_connect, host 127.0.0.1, port {server.port}), which `jobcast airflow standalone` defines")
    return 0


def cmd_generate(args) -> int:
    from jobcast.generate import generate

    board = generate(_settings(), postings=args.postings, days=args.days, seed=args.seed, start_date=args.start_date,
                     chunk_postings=args.chunk_postings, truth=not args.no_truth)
    print(f"generated {board['rows']['app.job_postings']} postings and {board['rows']['app.events']} events for "
          f"{board['start_date']}..{board['end_date']} in {board['seconds']:.1f}s")
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
    from jobcast.demo import demo

    return demo(_settings(), args.date, args.skip_airflow)


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


def cmd_reproduce(args) -> int:
    from pathlib import Path

    from jobs.reproduce import report, run

    out = run(_settings(), args.batch_id, workdir=Path(args.workdir) if args.workdir else None, keep=args.keep)
    if args.json:
        print(json.dumps(out, indent=2, default=str))
    else:
        print(report(out))
    return 0 if out["identical"] else 1


def cmd_models(args) -> int:
    from jobcast.models import registry

    settings = _settings()
    if args.action == "list":
        champ = (registry.champion(settings, args.task) or {}).get("version")
        for m in registry.list_versions(settings, args.task):
            mark = "*" if m["version"] == champ else " "
            metric = tasks.get(args.task).gate_metric[0]
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
    from jobcast.airflow import exec_cli

    exec_cli(_settings(), list(args.airflow_args))
    return 0  # not reached: the process is now `airflow`


def cmd_airflow_init(args) -> int:
    from jobcast.airflow import init_current

    print(init_current())
    return 0


def build_parser() -> argparse.ArgumentParser:
    names = tasks.names()  # the declared prediction tasks (jobcast.tasks)
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
    sp_ = sub.add_parser("spark", help="a local Spark Connect server that every step (and Airflow task) can share")
    spsub = sp_.add_subparsers(dest="action", required=True)
    for action in ("start", "stop", "status"):
        a = spsub.add_parser(action)
        a.set_defaults(fn=cmd_spark)
        if action == "start":
            a.add_argument("--foreground", action="store_true", help="run the server as this process (a container's)")
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
            sp.add_argument("--task", choices=names, default="salary")
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
    run.add_argument("--tasks", nargs="+", choices=names, default=list(names))
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
    rb.add_argument("task", choices=names)
    rb.add_argument("--to", type=int, help="batch_id to make live")
    rb.set_defaults(fn=cmd_rollback)

    cl = sub.add_parser("cleanup", help="fail batches left behind by interrupted runs; finish pending detaches and retention")
    cl.add_argument("--tasks", nargs="+", choices=names, default=list(names))
    cl.set_defaults(fn=cmd_cleanup)

    sub.add_parser("docs", help="regenerate docs/prediction-tables.md from the database comments").set_defaults(fn=cmd_docs)

    b = sub.add_parser("batches", help="list prediction batches")
    b.add_argument("--task", choices=names)
    b.add_argument("--limit", type=int, default=20)
    b.set_defaults(fn=cmd_batches)

    rp = sub.add_parser("reproduce", help="rebuild a published batch from its lineage (code commit, model, raw snapshots "
                                          "from the DVC remote) and diff it against the published rows; exit 1 if they differ")
    rp.add_argument("batch_id", type=int, help="predictions.batches.batch_id (`jobcast batches`)")
    rp.add_argument("--workdir", help="scratch directory (default .jobcast/reproduce/batch-N; emptied first)")
    rp.add_argument("--keep", action="store_true", help="keep the scratch directory when the rows are identical")
    rp.add_argument("--json", action="store_true", help="the comparison as JSON")
    rp.set_defaults(fn=cmd_reproduce)

    af = sub.add_parser("airflow", help="the airflow CLI on the project-local Airflow, e.g. `jobcast airflow dags test jobcast_daily 2026-10-30`")
    af.add_argument("airflow_args", nargs=argparse.REMAINDER)
    af.set_defaults(fn=cmd_airflow)

    sub.add_parser("airflow-init", help="create the DAGs' pools and connections in the Airflow of this environment "
                                        "(docker-compose's init)").set_defaults(fn=cmd_airflow_init)

    m = sub.add_parser("models", help="the model registry")
    m.add_argument("action", choices=["list", "show", "promote"])
    m.add_argument("--task", choices=names, default="salary")
    m.add_argument("--version")
    m.set_defaults(fn=cmd_models)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    return guarded(lambda: args.fn(args), args.command)


if __name__ == "__main__":
    sys.exit(main())
