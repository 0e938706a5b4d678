"""reproduce: rebuild a published batch from its recorded lineage, and diff it against the published rows.

`jobcast reproduce BATCH_ID`. The batch's `lineage` (predictions.batches, written by publish) names the git
commit that scored it, the model version and the day's raw snapshots as DVC entries, and the effective params.
In a scratch directory (.jobcast/reproduce/batch-N unless --workdir):
  code/    `git archive` of that commit (the commit must be in this clone: `git fetch` first);
  inputs/  the raw snapshots and the model, pulled from the DVC remote by their content hashes;
  then that commit's own `jobcast features` and `jobcast score --full --model-version V` run on them, with the
  recorded params, in the current Python environment.
The rebuilt rows go through the same CSV path as publish into a temporary table, and PostgreSQL compares them
with the batch's rows column by column: identical, or the rows that differ and the largest difference.

What it does not pin: the Python packages (the current environment runs the old commit; uv.lock of that commit
says what the batch used), and a batch scored with uncommitted changes ("-dirty") is rebuilt from its commit.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any, Callable

import yaml

from jobcast import archive
from jobcast.db.conn import transaction
from jobcast.errors import InputDataError
from jobcast.tasks import get as get_task

log = logging.getLogger(__name__)


def batch_record(settings, batch_id: int) -> dict[str, Any]:
    with transaction(settings, application_name="jobcast-reproduce") as conn, conn.cursor() as cur:
        cur.execute("select task, logical_date::text, model_version, status, lineage from predictions.batches "
                    "where batch_id = %s", (batch_id,))
        row = cur.fetchone()
    if row is None:
        raise InputDataError(f"batch {batch_id}: no such batch in predictions.batches (`jobcast batches` lists them)")
    rec = dict(zip(("task", "logical_date", "model_version", "status", "lineage"), row))
    if not rec["lineage"]:
        raise InputDataError(f"batch {batch_id} ({rec['task']} {rec['logical_date']}): no lineage recorded (published "
                             "before migration 0007, or never published); it cannot be rebuilt")
    return rec


def checkout(root: Path, commit: str, dest: Path) -> None:
    """The files of `commit` (git archive) in dest: the code exactly as committed, no work tree bookkeeping."""
    found = subprocess.run(["git", "-C", str(root), "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True)
    if found.returncode != 0:
        raise InputDataError(f"commit {commit} (the code that scored the batch) is not in {root}: "
                             "`git fetch` the branch it was on, then run reproduce again")
    tar = subprocess.run(["git", "-C", str(root), "archive", "--format=tar", commit], capture_output=True, check=True).stdout
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(dest, filter="data")


def rebuild(settings, rec: dict[str, Any], scratch: Path, echo: Callable[[str], None]) -> Path:
    """The batch's predictions partition, rebuilt in scratch from its lineage; returns its directory."""
    lin, task, ds = rec["lineage"], rec["task"], rec["logical_date"]
    code = str(lin.get("code") or "unknown")
    commit, dirty = code.removesuffix("-dirty"), code.endswith("-dirty")
    if commit == "unknown":
        raise InputDataError(f"batch of {task} {ds}: the code that scored it is unknown (not run from a git checkout)")
    if dirty:
        echo(f"warning: the batch was scored with uncommitted changes on top of {commit}; rebuilding from {commit} itself")
    code_dir, inputs = scratch / "code", scratch / "inputs"
    checkout(settings.root, commit, code_dir)
    version = lin["model"]["path"].split("/", 1)[1]
    entries = {f"data/{r['path']}": r for r in lin["raw"].values()}
    entries[f"models/{lin['model']['path']}"] = lin["model"]
    echo(f"pulling {len(entries)} inputs from the DVC remote (recorded: {lin.get('remote')})")
    archive.pull(settings, entries, inputs)
    params = scratch / "params.yaml"
    params.write_text(yaml.safe_dump(lin.get("params") or {}, allow_unicode=True))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(code_dir / "src"), str(code_dir)]), "JOBCAST_HOME": str(code_dir),
           "JOBCAST_DATA_DIR": str(inputs / "data"), "JOBCAST_MODELS_DIR": str(inputs / "models"),
           "JOBCAST_REPORTS_DIR": str(scratch / "reports"), "JOBCAST_STATE_DIR": str(scratch / "state"),
           "JOBCAST_PARAMS_OVERRIDE": str(params)}
    steps = [["features", "--date", ds, "--force"], ["score", "--task", task, "--date", ds, "--full", "--model-version", version]]
    for args in steps:
        echo(f"{commit}: jobcast {' '.join(args)}")
    # That commit's own CLI (its main(argv)), both steps in one process: one JVM, not one per step.
    script = ("import sys\nfrom jobcast.cli import main\nfor args in %r:\n    rc = main(args)\n    if rc:\n"
              "        print('failed: jobcast ' + ' '.join(args), file=sys.stderr)\n        sys.exit(rc)\n") % (steps,)
    proc = subprocess.run([sys.executable, "-c", script], cwd=code_dir, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise InputDataError(f"rebuilding batch of {task} {ds} at {commit} failed (exit {proc.returncode}); "
                             f"scratch kept in {scratch}:\n{tail}")
    return inputs / "data" / "predictions" / task / f"dt={ds}"


def diff(settings, batch_id: int, task: str, rebuilt: Path) -> dict[str, Any]:
    """The rebuilt rows against the published ones, in PostgreSQL (the same CSV load as publish, so the same
    types and rounding): row counts, rows that differ, and the largest difference (numeric columns by size)."""
    from psycopg2 import sql

    from jobcast.publish.store import SCHEMA, copy_parquet

    decl = get_task(task)
    table, columns = decl.table, decl.columns
    values = [c for c in columns if c != "job_id"]
    numeric = [c for c in values if decl.outputs.get(c) in ("double", "float", "long", "int")]
    # One transaction: the temporary table drops at its commit.
    with transaction(settings, application_name="jobcast-reproduce") as conn, conn.cursor() as cur:
        conn.set_client_encoding("UTF8")
        cur.execute(sql.SQL("select count(*) from {} where batch_id = %s").format(sql.Identifier(SCHEMA, table)), (batch_id,))
        published = cur.fetchone()[0]
        if published == 0:
            raise InputDataError(f"batch {batch_id}: its rows are no longer kept (retention keeps the live batch and "
                                 "publish.keep_batches others); nothing to compare the rebuilt rows with")
        cur.execute(sql.SQL("create temp table jc_rebuilt (like {} including defaults) on commit drop").format(
            sql.Identifier(SCHEMA, table)))
        copy_parquet(cur, sql.Identifier("jc_rebuilt"), rebuilt, columns, batch_id)
        differs = sql.SQL(" or ").join(sql.SQL("p.{c} is distinct from r.{c}").format(c=sql.Identifier(c)) for c in values)
        cur.execute(sql.SQL("""
            select count(*) filter (where r.job_id is null), count(*) filter (where p.job_id is null),
                   count(*) filter (where p.job_id is not null and r.job_id is not null and ({differs})),
                   count(r.job_id)
            from (select * from {t} where batch_id = %s) p full join jc_rebuilt r on r.job_id = p.job_id""").format(
            differs=differs, t=sql.Identifier(SCHEMA, table)), (batch_id,))
        only_published, only_rebuilt, differing, rebuilt_rows = cur.fetchone()
        largest = None
        for c in numeric:
            cur.execute(sql.SQL("""select p.job_id, p.{c}, r.{c}, abs(p.{c} - r.{c}) from {t} p join jc_rebuilt r using (job_id)
                                   where p.batch_id = %s and p.{c} is distinct from r.{c}
                                   order by abs(p.{c} - r.{c}) desc nulls first limit 1""").format(
                c=sql.Identifier(c), t=sql.Identifier(SCHEMA, table)), (batch_id,))
            row = cur.fetchone()
            if row and (largest is None or (row[3] or float("inf")) > largest["abs_diff"]):
                largest = {"column": c, "job_id": row[0], "published": row[1], "rebuilt": row[2],
                           "abs_diff": float(row[3]) if row[3] is not None else float("inf")}
        if largest is None and differing:  # only non-numeric columns differ: name the first such row and column
            for c in values:
                cur.execute(sql.SQL("""select p.job_id, p.{c}::text, r.{c}::text from {t} p join jc_rebuilt r using (job_id)
                                       where p.batch_id = %s and p.{c} is distinct from r.{c} limit 1""").format(
                    c=sql.Identifier(c), t=sql.Identifier(SCHEMA, table)), (batch_id,))
                row = cur.fetchone()
                if row:
                    largest = {"column": c, "job_id": row[0], "published": row[1], "rebuilt": row[2]}
                    break
    return {"published_rows": published, "rebuilt_rows": rebuilt_rows, "only_published": only_published,
            "only_rebuilt": only_rebuilt, "differing_rows": differing, "largest_difference": largest,
            "identical": only_published == only_rebuilt == differing == 0}


def run(settings, batch_id: int, *, workdir: Path | None = None, keep: bool = False,
        echo: Callable[[str], None] = print) -> dict[str, Any]:
    rec = batch_record(settings, batch_id)
    echo(f"batch {batch_id}: {rec['task']} {rec['logical_date']}, model {rec['model_version']}, code {rec['lineage'].get('code')}, "
         f"{rec['status']}")
    scratch = (workdir or settings.state_dir / "reproduce" / f"batch-{batch_id}").resolve()
    if scratch.exists():
        shutil.rmtree(scratch)
    rebuilt = rebuild(settings, rec, scratch, echo)
    out = {"batch_id": batch_id, "task": rec["task"], "logical_date": rec["logical_date"],
           **diff(settings, batch_id, rec["task"], rebuilt), "scratch": str(scratch)}
    if out["identical"] and not keep:
        shutil.rmtree(scratch, ignore_errors=True)
        out["scratch"] = None
    return out


def report(out: dict[str, Any]) -> str:
    head = f"batch {out['batch_id']} ({out['task']} {out['logical_date']}): "
    if out["identical"]:
        return head + f"identical: {out['rebuilt_rows']} rows rebuilt, every column equal to the published rows"
    lines = [head + f"DIFFERENT: {out['differing_rows']} of {out['published_rows']} rows differ, "
                    f"{out['only_published']} only published, {out['only_rebuilt']} only rebuilt"]
    big = out.get("largest_difference")
    if big:
        lines.append(f"  largest difference: {big['column']} of job {big['job_id']}: published {big['published']}, "
                     f"rebuilt {big['rebuilt']}" + (f" (|diff| {big['abs_diff']:.6g})" if "abs_diff" in big else ""))
    if out.get("scratch"):
        lines.append(f"  rebuilt partition and the code that made it: {out['scratch']}")
    return "\n".join(lines)
