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
    # Model quality next to the best achievable on this data (the generator's truth): bench/quality.py, which
    # also writes the DVC metrics and plots of dvc.yaml's quality stage (`dvc metrics show`, `dvc plots show`).
    subprocess.run([sys.executable, str(settings.root / "bench" / "quality.py"), "--date", str(day),
                    "--json", str(settings.metrics_dir / "quality.json"), "--plots", str(settings.metrics_dir)], check=False)
    record_in_dvc(settings, str(day))
    print(f"read it yourself: psql {database_url(settings)} -c 'select * from predictions.job_category limit 5'")
    return 0


def record_in_dvc(settings, day: str) -> None:
    """The demo ran every dvc.yaml stage's step for params.yaml's run.date, with its params: `dvc commit` records
    those outputs in dvc.lock (and the local DVC cache), so `dvc status` says the pipeline is up to date and
    `dvc repro` reruns only what a change touches. Only when the run used the checkout's own directories (what
    dvc.yaml names) and the date is run.date; otherwise dvc.lock would describe another run."""
    defaults = (settings.data_dir, settings.models_dir, settings.reports_dir) == tuple(
        settings.root / d for d in ("data", "models", "reports"))
    if not (settings.root / ".dvc").is_dir() or not defaults or day != str(settings.param("run.date")):
        print("dvc: not recorded (the run used other directories or another date than dvc.yaml's)")
        return
    proc = subprocess.run([sys.executable, "-m", "dvc", "commit", "--force", "--quiet"], cwd=settings.root,
                          capture_output=True, text=True, env={"DVC_NO_ANALYTICS": "1", **os.environ})
    if proc.returncode != 0:
        print(f"dvc commit: failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-500:]}")
        return
    status = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=settings.root, capture_output=True, text=True,
                            env={"DVC_NO_ANALYTICS": "1", **os.environ}).stdout.strip()
    # dvc.yaml's database stage is always_changed: the shared DB is outside what DVC can hash.
    print("dvc: this run is recorded in dvc.lock; `dvc status`: " + " ".join(status.split()))
