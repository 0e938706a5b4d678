"""The `jobcast` CLI as users call it, and the real dvc.yaml as DVC sees it."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.e2e

JOBCAST = str(Path(sys.executable).parent / "jobcast")
DVC = str(Path(sys.executable).parent / "dvc")


def jobcast(*args, env=None, cwd=REPO):
    return subprocess.run([JOBCAST, *args], capture_output=True, text=True, env=env or os.environ, cwd=cwd, timeout=600)


def test_cli_errors_are_one_line_and_exit_2(settings):
    proc = jobcast("extract", "--date", "2026-13-45")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "jobcast: error: date '2026-13-45': expected YYYY-MM-DD"
    proc = jobcast("publish", "--task", "salary", "--date", "2026-10-30")
    assert proc.returncode == 2 and "no predictions for 2026-10-30; run `jobcast score" in proc.stderr


def test_db_url_and_status_report_the_configured_server(settings, db_url):
    proc = jobcast("db", "url")
    assert proc.returncode == 0 and proc.stdout.strip() == db_url


def test_dvc_sees_every_step_as_a_stage(settings):
    proc = subprocess.run([DVC, "dag", "--dot"], capture_output=True, text=True, cwd=REPO, check=True)
    stages = ["database", "generate", "window", "validate_inputs", "quality"]
    for task in ("salary", "category", "cvr"):
        stages += [f"train@{task}", f"score@{task}", f"validate@{task}", f"publish@{task}"]
    for stage in stages:
        assert f'"{stage}"' in proc.stdout, stage
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        assert stage["cmd"].startswith(("jobcast ", "python bench/")), name  # the same CLI as users and Airflow, or a bench


def test_dvc_repro_reproduces_a_run_and_then_skips_unchanged_stages(tmp_path, settings, db_url):
    """`dvc repro` in a copy of the repo (a small data size), against this test's database. Every stage is a
    process of its own, so its Spark steps are clients of one Spark Connect server (`jobcast spark start`,
    JOBCAST_SPARK_MASTER=sc://...), as an ML engineer would run many stages, instead of a JVM per stage."""
    from conftest import free_port

    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    files = [f for f in files if f != "dvc.lock"]  # the checkout's own run (after `make demo`), not this copy's
    work = tmp_path / "repo"
    for f in files:
        if (REPO / f).is_file():
            (work / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, work / f)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["generate"].update(postings=3000, days=30, start_date="2026-09-01")
    params["run"]["date"] = "2026-09-30"
    params["train"].update(window_days=6, holdout_days=2)  # as tests/params-small.yaml
    # Two of the tasks: the matrix stages are the same command per task, and each stage is a process (the four
    # tasks took 6 of this suite's minutes with a JVM per stage; the e2e pipeline test runs all four).
    params["tasks"] = ["salary", "cvr"]
    (work / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCAST_")}
    port = free_port()
    env.update(JOBCAST_DATABASE_URL=db_url, JOBCAST_HOME=str(work), JOBCAST_SPARK_MASTER=f"sc://127.0.0.1:{port}",
               JOBCAST_SPARK_CONNECT_PORT=str(port), JOBCAST_SPARK_CONNECT_MASTER="local[2]",
               PATH=str(Path(sys.executable).parent) + os.pathsep + env["PATH"])  # the server's pid and logs: work/.jobcast
    jobcast_bin = str(Path(sys.executable).parent / "jobcast")
    started = subprocess.run([jobcast_bin, "spark", "start"], cwd=work, env=env, capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        repro_twice(work, env, db_url)
    finally:
        subprocess.run([jobcast_bin, "spark", "stop"], cwd=work, env=env, capture_output=True, text=True, timeout=120)


def repro_twice(work: Path, env: dict, db_url: str) -> None:
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "t"]):
        subprocess.run(cmd, cwd=work, check=True, env=env)
    first = subprocess.run([DVC, "repro"], cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    assert (work / "dvc.lock").is_file()
    # The models record their inputs with DVC's own hash: the same value dvc.lock has for data/features.
    from jobcast.storage import dvc_hash

    lock = yaml.safe_load((work / "dvc.lock").read_text())
    locked = {d["path"]: d["md5"] for d in lock["stages"]["train@salary"]["deps"]}
    assert locked["data/features"] == dvc_hash(work / "data" / "features")
    with psycopg2.connect(db_url) as c, c.cursor() as cur:
        for view in ("job_salary", "job_cvr"):
            cur.execute(f"select count(*), min(prediction_date)::text from predictions.{view}")
            n, pdate = cur.fetchone()
            assert n > 0 and pdate == "2026-09-30", view
    assert set(lock["stages"]) >= {"train@salary", "train@cvr", "publish@cvr"} and "train@category" not in lock["stages"]
    second = subprocess.run([DVC, "repro"], cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "Running stage 'train@salary'" not in second.stdout  # unchanged inputs: not retrained
    assert (work / "metrics" / "quality.json").is_file() and (work / "metrics" / "calibration_cvr.json").is_file()


def test_rollback_and_batches_commands(settings):
    proc = jobcast("rollback", "salary")
    assert proc.returncode == 2 and "no live batch to roll back" in proc.stderr
    proc = jobcast("batches")
    assert proc.returncode == 0 and proc.stdout.startswith(" batch task")
