"""What Airflow costs around jobcast's steps, measured in one session on the default data.

    .venv/bin/python bench/airflow.py [--date 2026-10-30] [--skip-standalone] [--skip-dags-test]

Needs the champions and the demo data (`make demo` first). Prints:
  1. DAG parse time (DagBag over dags/, fresh interpreter each time, Airflow already imported).
  2. One jobcast_daily for --date, run four ways against a throwaway copy of the shared DB:
     - `jobcast run` (no Airflow, one process: the baseline),
     - `airflow dags test` with SQLite metadata, and with PostgreSQL metadata (in-process, tasks in series),
     - a real run: `jobcast airflow standalone` (scheduler, LocalExecutor, PostgreSQL metadata), triggered
       with the date as run conf; the prediction branches run in parallel (Spark steps share one pool slot).
       Twice: every Spark task starting its own JVM (JOBCAST_AIRFLOW_SPARK=local, before), and every Spark task a
       client of one Spark Connect server through the connection jobcast_spark (the default, after).
     For each: wall time, the steps' own time (the seconds each jobs/<step>.run reports) and the rest
     (Airflow's share: task processes, imports, Spark session start per task, scheduling gaps).
  3. Per-task overhead of the two scheduler runs: a task's duration minus its step's seconds in the CLI run.
The shared DB of the checkout is not touched: the runs publish into a copy; data/ and reports/ go to a temp dir.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
BIN = Path(sys.executable).parent
# jobcast.context logs "end   <step> ... rows=N  S.Ss" once per step, in the CLI and in every task log.
STEP_LINE = re.compile(r"\bend\s+(extract|features|score|validate|publish)\s+(?:task=(\w+)\s+)?date=\S+\s+rows=\d+\s+([\d.]+)s")
PARSE = """
import sys, time
import airflow  # noqa: F401  (the interpreter's own start is not DAG parse time)
from airflow.dag_processing.dagbag import DagBag
t0 = time.perf_counter(); bag = DagBag(dag_folder=sys.argv[1]); dt = time.perf_counter() - t0
assert not bag.import_errors, bag.import_errors
print("PARSE", dt, len(bag.dags))
"""


def step_seconds(text: str) -> tuple[float, int]:
    found = [float(m.group(3)) for m in STEP_LINE.finditer(text)]
    return sum(found), len(found)


def parse_times(env: dict, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        proc = subprocess.run([sys.executable, "-c", PARSE, str(ROOT / "dags")], env=env, capture_output=True, text=True, check=True)
        out.append(float(next(l for l in proc.stdout.splitlines() if l.startswith("PARSE ")).split()[1]))
    return out


def create_db(admin_url: str, name: str, template: str | None = None) -> str:
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'drop database if exists "{name}" with (force)')
        cur.execute(f'create database "{name}"' + (f' template "{template}"' if template else ""))
    conn.close()
    return name


def dag_run_times(meta_url: str | Path, run_like: str) -> tuple[float, list[tuple[str, float]]]:
    """(run wall seconds, [(task_id, seconds)]) from the metadata DB."""
    q_run = "select start_date, end_date from dag_run where dag_id = 'jobcast_daily' and run_id like ? order by id desc limit 1"
    q_ti = ("select task_id, start_date, end_date from task_instance where dag_id = 'jobcast_daily' and run_id = "
            "(select run_id from dag_run where dag_id = 'jobcast_daily' and run_id like ? order by id desc limit 1) "
            "and state = 'success'")
    if isinstance(meta_url, Path):
        conn = sqlite3.connect(meta_url)
        run = conn.execute(q_run, (run_like,)).fetchone()
        tis = conn.execute(q_ti, (run_like,)).fetchall()
        conn.close()
        from datetime import datetime

        def sec(a, b):
            return (datetime.fromisoformat(str(b)) - datetime.fromisoformat(str(a))).total_seconds()
    else:
        with psycopg2.connect(meta_url) as conn, conn.cursor() as cur:
            cur.execute(q_run.replace("?", "%s"), (run_like,))
            run = cur.fetchone()
            cur.execute(q_ti.replace("?", "%s"), (run_like,))
            tis = cur.fetchall()
        conn.close()

        def sec(a, b):
            return (b - a).total_seconds()
    return sec(*run), [(t, sec(a, b)) for t, a, b in tis]


def main() -> int:
    from jobcast.airflow import airflow_env, sqlite_metadata_url, with_openlineage
    from jobcast.config import Settings
    from jobcast.db.conn import database_url
    from jobcast.db.local import cluster_for

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--date", default=None)
    ap.add_argument("--parse-repeats", type=int, default=5)
    ap.add_argument("--skip-standalone", action="store_true")
    ap.add_argument("--skip-dags-test", action="store_true", help="only the CLI baseline and the two scheduler runs")
    args = ap.parse_args()
    settings = Settings.load(ROOT)
    date = args.date or str(settings.param("run.date"))
    if not settings.database_url:
        cluster_for(settings).start()
    shared = psycopg2.extensions.parse_dsn(database_url(settings))
    server = f"postgresql://{shared.get('user', '')}@{shared.get('host', '127.0.0.1')}:{shared.get('port', 5432)}"
    tmp = Path(tempfile.mkdtemp(prefix="jobcast-bench-airflow-"))
    bench_db = create_db(f"{server}/postgres", "jobcast_bench_airflow", template=shared.get("dbname", "jobcast"))
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "JOBCAST_"))}
    base.update(JOBCAST_HOME=str(ROOT), JOBCAST_DATABASE_URL=f"{server}/{bench_db}", JOBCAST_DATA_DIR=str(tmp / "data"),
                JOBCAST_REPORTS_DIR=str(tmp / "reports"), JOBCAST_STATE_DIR=str(tmp / "state"),
                JOBCAST_DVC_REMOTE=str(tmp / "dvc-remote"),  # publish archives there, not in the checkout's remote
                JOBCAST_MODELS_DIR=str(settings.models_dir), PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    for k in ("JOBCAST_SPARK_MASTER", "JOBCAST_SPARK_CONF", "JOBCAST_PARAMS_OVERRIDE"):
        if k in os.environ:
            base[k] = os.environ[k]
    rows: list[tuple[str, float, float, int]] = []  # (how, wall, step seconds, steps seen)
    notes: list[str] = []

    def airflow_home(name: str, meta: str) -> dict:
        home = tmp / name
        home.mkdir(parents=True, exist_ok=True)
        env = with_openlineage({**base, **airflow_env(ROOT, port=18793, metadata_url=meta), "AIRFLOW_HOME": str(home)})
        subprocess.run([str(BIN / "jobcast"), "airflow", "pools", "list"], env=env, check=True, capture_output=True)
        return env

    per_task: dict[str, dict[str, tuple[float, float]]] = {}  # how -> task_id -> (task seconds, its step's CLI seconds)
    cli_steps: dict[tuple[str, str], float] = {}  # (step, task) -> seconds in the CLI baseline

    def standalone_run(spark: str, label: str) -> None:
        # its own metadata DB: a process of the previous run that outlived its group would write into a reused one
        meta_db = create_db(f"{server}/postgres", f"jobcast_bench_airflow_meta_{spark}")
        env = airflow_home(f"af-standalone-{spark}", f"{server.replace('postgresql://', 'postgresql+psycopg2://')}/{meta_db}")
        env["AIRFLOW__API__PORT"] = "18793"
        env["JOBCAST_AIRFLOW_SPARK"] = spark
        env["JOBCAST_SPARK_CONNECT_PORT"] = "18794"
        shutil.rmtree(tmp / "data" / "predictions", ignore_errors=True)  # each run scores as the first would
        log = (tmp / f"standalone-{spark}.log").open("w")
        sa = subprocess.Popen([str(BIN / "jobcast"), "airflow", "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT,
                              cwd=ROOT, start_new_session=True)
        try:
            deadline = time.monotonic() + 240
            while True:
                try:
                    h = json.load(urllib.request.urlopen("http://127.0.0.1:18793/api/v2/monitor/health", timeout=5))
                    if h["scheduler"]["status"] == "healthy" and h["dag_processor"]["status"] == "healthy":
                        out = subprocess.run([str(BIN / "airflow"), "dags", "list"], env=env, capture_output=True, text=True).stdout
                        if "jobcast_daily" in out:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline or sa.poll() is not None:
                    sys.exit(f"standalone did not come up:\n{(tmp / f'standalone-{spark}.log').read_text()[-3000:]}")
                time.sleep(2)
            subprocess.run([str(BIN / "airflow"), "dags", "trigger", "jobcast_daily", "--run-id", "bench__daily",
                            "--conf", json.dumps({"date": date, "full_rescore": True})], env=env, check=True, capture_output=True)
            subprocess.run([str(BIN / "airflow"), "dags", "unpause", "jobcast_daily"], env=env, check=True, capture_output=True)
            meta = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("+psycopg2", "")
            deadline = time.monotonic() + 1800
            while True:
                with psycopg2.connect(meta) as c, c.cursor() as cur:
                    cur.execute("select state from dag_run where run_id = 'bench__daily'")
                    state = cur.fetchone()[0]
                c.close()
                if state in ("success", "failed"):
                    break
                if time.monotonic() > deadline:
                    sys.exit("the standalone run did not finish in 30 min")
                time.sleep(3)
            if state != "success":
                sys.exit(f"the standalone run failed; logs in {env['AIRFLOW_HOME']}/logs")
            run_wall, tis = dag_run_times(meta, "bench__daily")
            task_logs = {p.parent.name.removeprefix("task_id="): p.read_text(errors="replace")
                         for p in Path(env["AIRFLOW_HOME"], "logs").rglob("*.log") if "run_id=bench__daily" in str(p)}
            steps, n_steps = step_seconds("\n".join(task_logs.values()))
            rows.append((label, run_wall, steps, n_steps))
            per_task[label] = {}
            for task_id, secs in tis:
                m = STEP_LINE.search(task_logs.get(task_id, ""))
                if m:
                    per_task[label][task_id] = (secs, cli_steps.get((m.group(1), m.group(2) or ""), float("nan")))
            task_total = sum(s for _, s in tis)
            notes.append(f"{label}: {len(tis)} task instances, {task_total:.0f} s summed task time (steps {steps:.0f} s); "
                         f"the branches overlap, so the {run_wall:.0f} s wall is less than the sum")
        finally:
            os.killpg(sa.pid, signal.SIGTERM)
            sa.wait(60)
            if spark == "connect":
                subprocess.run([str(BIN / "jobcast"), "spark", "stop"], env=env, capture_output=True)

    # 1. parse time
    sqlite_env = airflow_home("af-sqlite", sqlite_metadata_url(tmp / "af-sqlite"))
    parse = parse_times(sqlite_env, args.parse_repeats)

    # 2a. the CLI baseline (run again at the end: the spread of the two is the machine's noise)
    def cli_run(label: str) -> None:
        t0 = time.perf_counter()
        proc = subprocess.run([str(BIN / "jobcast"), "run", "--date", date, "--full"], env=base, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"jobcast run failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        rows.append((label, time.perf_counter() - t0, *step_seconds(proc.stdout + proc.stderr)))
        if not cli_steps:
            for m in STEP_LINE.finditer(proc.stdout + proc.stderr):
                cli_steps[(m.group(1), m.group(2) or "")] = float(m.group(3))

    cli_run("jobcast run (CLI, no Airflow: baseline)")

    # 2b. dags test, SQLite and PostgreSQL metadata
    pg_meta = f"{server.replace('postgresql://', 'postgresql+psycopg2://')}/{create_db(f'{server}/postgres', 'jobcast_bench_airflow_meta')}"
    for label, env, meta in () if args.skip_dags_test else (("airflow dags test, SQLite metadata", sqlite_env, tmp / "af-sqlite" / "airflow.db"),
                             ("airflow dags test, PostgreSQL metadata", airflow_home("af-pg", pg_meta), pg_meta.replace("+psycopg2", ""))):
        t0 = time.perf_counter()
        proc = subprocess.run([str(BIN / "airflow"), "dags", "test", "jobcast_daily", date], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        log = proc.stdout + proc.stderr
        if proc.returncode or "state=success" not in log:
            sys.exit(f"{label} failed:\n{log[-3000:]}")
        _, tis = dag_run_times(meta, "manual__%")
        rows.append((label, wall, *step_seconds(log)))
        notes.append(f"{label}: {len(tis)} task instances, {sum(t for _, t in tis):.0f} s summed task time in one "
                     f"process (Spark session and GX shared, tasks in series)")

    # 2c. a real scheduler run (parallel branches), before and after: every Spark task starting its own JVM
    # (JOBCAST_AIRFLOW_SPARK=local), then every Spark task a client of one Spark Connect server (the default)
    if not args.skip_standalone:
        # Every posting closes the day after --date, so the interval that unpausing schedules (yesterday;
        # catchup is off) stops at extract instead of competing for the machine.
        with psycopg2.connect(f"{server}/{bench_db}") as c, c.cursor() as cur:
            cur.execute("update app.job_postings set closed_at = %s::date + 1 where closed_at is null or closed_at > %s::date + 1", (date, date))
        c.close()
        for spark in ("local", "connect"):
            standalone_run(spark, f"standalone scheduler run, Spark {'JVM per task' if spark == 'local' else 'Connect server'}")

    cli_run("jobcast run again (baseline noise)")
    print(f"DAG parse (DagBag over dags/, {len(parse)} fresh interpreters): median {statistics.median(parse) * 1000:.0f} ms, "
          f"max {max(parse) * 1000:.0f} ms (goal < 500 ms)")
    print(f"\none jobcast_daily for {date} (every declared task), same machine, same session:\n")
    base_wall, base_steps = rows[0][1], rows[0][2]
    print(f"| {'how':<48} | {'wall s':>7} | {'steps s':>7} | {'steps':>5} | {'overhead':>8} | {'vs CLI':>6} |")
    print(f"|{'-' * 50}|{'-' * 9}|{'-' * 9}|{'-' * 7}|{'-' * 10}|{'-' * 8}|")
    for how, wall, steps, n in rows:
        print(f"| {how:<48} | {wall:7.1f} | {steps:7.1f} | {n:5d} | {max(wall - base_steps, 0) / wall:7.0%} | "
              f"{wall / base_wall:5.2f}x |")
    print(f"\nsteps s: the seconds the 13 jobs/<step>.run calls report (in a scheduler run they include each task's own"
          f"\nSpark session and GX import). overhead: the share of the wall time beyond the baseline's {base_steps:.0f} s of"
          f"\nstep work (one process, Spark and GX started once), i.e. what the way of running adds.")
    for n in notes:
        print("-", n)
    if len(per_task) == 2:
        (before, b), (after, a) = per_task.items()
        # the Spark tasks of a daily run: scoring (features are reused from the CLI run: the same snapshot)
        spark_tasks = sorted(t for t in b if t.startswith("score_"))
        print("\nper-task overhead in the scheduler runs: a task's duration minus its step's seconds in the CLI baseline"
              "\n(task process, imports, and a Spark session: a JVM started per task before, a Connect client after)\n")
        print(f"| {'task':<22} | {'CLI step s':>10} | {'JVM per task: task s':>20} | {'overhead s':>10} | "
              f"{'Connect: task s':>15} | {'overhead s':>10} | {'overhead before / after':>23} |")
        print(f"|{'-' * 24}|{'-' * 12}|{'-' * 22}|{'-' * 12}|{'-' * 17}|{'-' * 12}|{'-' * 25}|")
        for t in sorted(b):
            if t not in a:
                continue
            (tb, step), (ta, _) = b[t], a[t]
            ob, oa = tb - step, ta - step
            print(f"| {t:<22} | {step:10.1f} | {tb:20.1f} | {ob:10.1f} | {ta:15.1f} | {oa:10.1f} | "
                  f"{(ob / oa if oa > 0.05 else float('inf')):22.1f}x |")
        ob = sum(b[t][0] - b[t][1] for t in spark_tasks if t in a)
        oa = sum(a[t][0] - a[t][1] for t in spark_tasks if t in a)
        print(f"\nSpark tasks ({', '.join(t for t in spark_tasks if t in a)}): overhead {ob:.1f} s before, {oa:.1f} s after: "
              f"{ob / max(oa, 0.05):.1f}x less (goal >= 3x)")
    for name in ("jobcast_bench_airflow", "jobcast_bench_airflow_meta", "jobcast_bench_airflow_meta_local",
                 "jobcast_bench_airflow_meta_connect"):
        conn = psycopg2.connect(f"{server}/postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'drop database if exists "{name}" with (force)')
        conn.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
