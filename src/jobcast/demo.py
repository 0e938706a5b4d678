"""The fresh-machine demo (`jobcast demo`, the README's first command): the project-local DB, a generated
board, the daily run through the CLI path, then the same date through Airflow, then the quality table."""

from __future__ import annotations

import os
import subprocess
import sys
import time


def demo(settings, date: str | None = None, skip_airflow: bool = False) -> int:
    from jobcast import tasks
    from jobcast.context import RunContext, parse_date
    from jobcast.db.conn import database_url
    from jobcast.db.migrate import migrate_project
    from jobcast.generate import generate
    from jobcast.report import live_summary

    from jobs.run import run

    day = parse_date(date or settings.param("run.date"))
    if not settings.database_url:
        from jobcast.db.local import cluster_for

        cluster_for(settings).start()
    migrate_project(settings)
    board = generate(settings)
    print(f"generated {board['rows']['app.job_postings']} postings and {board['rows']['app.events']} events for "
          f"{board['start_date']}..{board['end_date']} in {board['seconds']:.1f}s")
    print(f"jobcast run {day}")
    run(RunContext(logical_date=day, settings=settings))
    if not skip_airflow:
        log_file = settings.state_dir / "logs" / f"demo-airflow-{day}.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with log_file.open("w") as fh:
            # One in-process run: SQLite metadata is enough (and is what the embedded defaults promise).
            proc = subprocess.run([sys.executable, "-m", "jobcast.cli", "airflow", "dags", "test", "jobcast_daily", str(day)],
                                  stdout=fh, stderr=subprocess.STDOUT, env={"JOBCAST_AIRFLOW_DB": "sqlite", **os.environ})
        outcome = "success" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
        print(f"airflow dags test jobcast_daily {day}: {outcome} in {time.perf_counter() - t0:.0f}s (log: {log_file})")
        if proc.returncode != 0:
            return 1
    for line in live_summary(settings, tasks.names()):
        print(line)
    # Model quality next to the best achievable on this data (the generator's truth): bench/quality.py.
    subprocess.run([sys.executable, str(settings.root / "bench" / "quality.py"), "--date", str(day)], check=False)
    print(f"read it yourself: psql {database_url(settings)} -c 'select * from predictions.job_category limit 5'")
    return 0
