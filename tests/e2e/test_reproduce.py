"""`jobcast reproduce BATCH_ID`: a batch published several runs ago, rebuilt in a fresh clone from its lineage
(the code commit, the model and the raw snapshots pulled from the DVC remote) and compared row by row."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, make_ctx

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
DATES = ("2026-09-28", "2026-09-29", "2026-09-30")


def test_a_batch_published_several_runs_ago_is_rebuilt_identical_in_a_fresh_clone_after_dvc_pull(tmp_path, champions, conn, db_url):
    from jobs.reproduce import diff
    from jobs.run import run

    settings = champions
    for day in DATES:  # three daily runs; the first one's batch is superseded twice
        run(make_ctx(settings, day), tasks=("cvr",), echo=lambda line: None)
    with conn.cursor() as cur:
        cur.execute("select batch_id, status, lineage from predictions.batches where task = 'cvr' order by logical_date")
        batches = cur.fetchall()
    assert [b[1] for b in batches] == ["superseded", "superseded", "published"]
    first, _, lineage = batches[0]
    # The batch names what it was made from, and the remote holds it (the test's remote: JOBCAST_DVC_REMOTE).
    assert set(lineage["raw"]) >= {"job_postings", "events"} and lineage["model"]["md5"].endswith(".dir")
    assert lineage["code"] and lineage["params"]["train"]["window_days"] == 6
    remote = Path(os.environ["JOBCAST_DVC_REMOTE"])
    assert (remote / "files" / "md5" / lineage["model"]["md5"][:2] / lineage["model"]["md5"][2:]).is_file()

    # A fresh clone of the code, nothing else: no data, no models, no state; only the shared DB and DVC remote.
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCAST_")}
    env.update(JOBCAST_DATABASE_URL=db_url, JOBCAST_DVC_REMOTE=str(remote), JOBCAST_SPARK_MASTER="local[2]",
               JOBCAST_SPARK_CONF=os.environ["JOBCAST_SPARK_CONF"])
    # The pipeline's outputs have no dvc.lock in a fresh clone (README, "Reproducing a batch"): --allow-missing says so
    # without failing; the batch's own inputs come by its lineage.
    pull = subprocess.run([str(BIN / "dvc"), "pull", "--allow-missing"], cwd=clone, env=env, capture_output=True, text=True)
    assert pull.returncode == 0, pull.stdout + pull.stderr
    assert not [p for d in ("data", "models") for p in (clone / d).rglob("*") if p.is_file()]  # nothing local

    proc = subprocess.run([str(BIN / "jobcast"), "reproduce", str(first), "--keep", "--json"], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert out["identical"] and out["differing_rows"] == 0 and out["rebuilt_rows"] == out["published_rows"] > 1000, out
    scratch = Path(out["scratch"])
    assert scratch.is_relative_to(clone / ".jobcast" / "reproduce")
    assert (scratch / "code" / "jobs" / "reproduce.py").is_file()  # the commit's code, from git
    assert (scratch / "inputs" / "data" / "raw" / "events" / f"dt={DATES[0]}").is_dir()  # pulled from the remote

    # The comparison finds a change: one published value off by 1e-9, one row's reasons edited.
    with conn.cursor() as cur:
        cur.execute("update jobcast_internal.cvr_rows set cvr = cvr + 1e-9 where batch_id = %s and job_id = "
                    "(select min(job_id) from jobcast_internal.cvr_rows where batch_id = %s) returning job_id", (first, first))
        job = cur.fetchone()[0]
        cur.execute("update jobcast_internal.cvr_rows set reasons = jsonb_set(reasons, '{rest}', '0') where batch_id = %s "
                    "and job_id = (select max(job_id) from jobcast_internal.cvr_rows where batch_id = %s)", (first, first))
    rebuilt = scratch / "inputs" / "data" / "predictions" / "cvr" / f"dt={DATES[0]}"
    changed = diff(settings, first, "cvr", rebuilt)
    assert not changed["identical"] and changed["differing_rows"] == 2
    big = changed["largest_difference"]
    assert big["column"] == "cvr" and big["job_id"] == job and big["abs_diff"] == pytest.approx(1e-9, rel=1e-3)
