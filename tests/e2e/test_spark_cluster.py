"""The cluster path: scoring against a real Spark standalone master + worker started from pyspark's scripts."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import pyspark

from conftest import REPO, SMALL_DATE, free_port

pytestmark = pytest.mark.e2e

SPARK_CLASS = str(Path(pyspark.__file__).parent / "bin" / "spark-class")


def wait_for(path: Path, text: str, proc, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        assert proc.poll() is None, path.read_text(errors="replace")[-2000:]
        time.sleep(0.3)
    raise AssertionError(f"{text!r} not in {path} after {seconds}s")


@pytest.fixture
def standalone_cluster(tmp_path):
    env = {**os.environ, "SPARK_HOME": str(Path(pyspark.__file__).parent), "SPARK_LOCAL_IP": "127.0.0.1",
           "PYSPARK_PYTHON": sys.executable}
    port = free_port()
    procs = []
    try:
        mlog = tmp_path / "master.log"
        master = subprocess.Popen([SPARK_CLASS, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                                   "--port", str(port), "--webui-port", str(free_port())],
                                  env=env, stdout=mlog.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(master)
        wait_for(mlog, "I have been elected leader", master)
        wlog = tmp_path / "worker.log"
        worker = subprocess.Popen([SPARK_CLASS, "org.apache.spark.deploy.worker.Worker", f"spark://127.0.0.1:{port}",
                                   "--cores", "1", "--memory", "1g", "--webui-port", str(free_port()),
                                   "--work-dir", str(tmp_path / "work")],
                                  env=env, stdout=wlog.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(worker)
        wait_for(wlog, "Successfully registered with master", worker)
        yield f"spark://127.0.0.1:{port}", mlog
    finally:
        for p in reversed(procs):
            os.killpg(p.pid, 15)
            p.wait(30)


def test_scoring_runs_on_a_standalone_spark_cluster(settings, champions, standalone_cluster):
    url, master_log = standalone_cluster  # features and models built with local Spark (the champions fixture)
    env = {**os.environ, "JOBCAST_SPARK_MASTER": url, "SPARK_LOCAL_IP": "127.0.0.1",
           "JOBCAST_SPARK_CONF": "spark.executor.memory=512m,spark.sql.shuffle.partitions=2"}
    proc = subprocess.run([str(Path(sys.executable).parent / "jobcast"), "score", "--task", "salary", "--date", SMALL_DATE],
                          env=env, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Registered app jobcast" in master_log.read_text()  # the work went to the cluster
    preds = pq.read_table(settings.data_dir / "predictions" / "salary" / f"dt={SMALL_DATE}").to_pandas()
    feats = pq.read_table(settings.data_dir / "features" / f"dt={SMALL_DATE}", columns=["job_id"]).to_pandas()
    assert len(preds) == len(feats) and preds.job_id.is_unique and (preds.salary_p50 > 0).all()
