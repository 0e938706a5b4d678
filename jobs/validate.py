"""validate: the predictions suite on a scored batch; writes the verdict that publish requires.

The verdict (reports/validations/<task>/dt=D.json) records the content hash of the predictions it
checked, so publish refuses predictions that changed after validation or never passed it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path

import pyarrow.parquet as pq

from jobcast.context import RunContext, StepResult, timed_step
from jobcast.errors import InputDataError, ValidationFailed
from jobcast.storage import dir_hash, partition, read_manifest

log = logging.getLogger(__name__)


def verdict_path(settings, task: str, date: str) -> Path:
    return settings.reports_dir / "validations" / task / f"dt={date}.json"


def read_verdict(settings, task: str, date: str) -> dict | None:
    path = verdict_path(settings, task, date)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def run(ctx: RunContext, *, task: str = "salary") -> StepResult:
    from jobcast.validation.gx import validate_dataframe

    settings = ctx.settings
    preds = partition(settings.data_dir, "predictions", task, date=ctx.ds)
    if not preds.is_dir():
        raise InputDataError(f"{preds}: no predictions for {ctx.ds}; run `jobcast score --task {task} --date {ctx.ds}` first")
    manifest = read_manifest(preds)
    with timed_step("validate", ctx, task) as res:
        df = pq.read_table(preds).to_pandas()
        bounds = settings.param(f"validate.{task}")
        params = {"expected_rows": int(manifest.get("expected_rows") or -1),
                  "salary_min": float(bounds["min"]), "salary_max": float(bounds["max"])}
        outcome = validate_dataframe(
            df, settings.root / "expectations" / f"predictions_{task}.json", settings.reports_dir,
            batch_name=f"{task}/dt={ctx.ds}", parameters=params, run_name=ctx.run_id,
        )
        verdict = {
            "task": task, "logical_date": ctx.ds, "suite": outcome.suite, "success": outcome.success,
            "evaluated": outcome.evaluated, "failed": outcome.failed, "report_path": outcome.report_path,
            "predictions_version": dir_hash(preds), "model_version": manifest.get("model_version"),
            "rows": len(df), "run_id": ctx.run_id, "validated_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        }
        path = verdict_path(settings, task, ctx.ds)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(verdict, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
        os.replace(tmp, path)
        log.info("validation report (Data Docs): %s", outcome.report_path)
        if not outcome.success:
            raise ValidationFailed(
                f"{preds}: suite {outcome.suite} failed {len(outcome.failed)} of {outcome.evaluated} expectations: "
                f"{outcome.failure_summary()}; report: {outcome.report_path}", outcome.report_path)
        res.rows = len(df)
        res.paths.update(report=str(outcome.report_path), verdict=str(path))
        res.metrics["expectations"] = outcome.evaluated
    return res
