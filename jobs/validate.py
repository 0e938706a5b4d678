"""validate: Great Expectations gates on each layer of a date: raw snapshot, features, predictions.

Each gate writes a verdict (reports/validations/<subject>/dt=D.json) with the content hash of what it
checked and the Data Docs page, and fails loudly. publish requires a passing predictions verdict whose
hash still matches, so predictions that failed (or changed after) validation never reach the web apps.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from jobcast.context import RunContext, StepResult, timed_step
from jobcast.errors import InputDataError, ValidationFailed
from jobcast.sources import day_bounds
from jobcast.storage import dir_hash, partition, read_manifest

log = logging.getLogger(__name__)

LAYERS = ("raw", "features", "predictions")


def verdict_path(settings, subject: str, date: str) -> Path:
    return settings.reports_dir / "validations" / subject / f"dt={date}.json"


def read_verdict(settings, subject: str, date: str) -> dict | None:
    path = verdict_path(settings, subject, date)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _gate(ctx: RunContext, subject: str, suite: str, data_dir: Path, df: pd.DataFrame, params: dict[str, Any],
          extra: dict[str, Any] | None = None) -> dict:
    from jobcast.validation.gx import validate_dataframe

    settings = ctx.settings
    outcome = validate_dataframe(df, settings.root / "expectations" / f"{suite}.json", settings.reports_dir,
                                 batch_name=f"{subject}/dt={ctx.ds}", parameters=params, run_name=ctx.run_id)
    verdict = {
        "subject": subject, "suite": outcome.suite, "logical_date": ctx.ds, "success": outcome.success,
        "evaluated": outcome.evaluated, "failed": outcome.failed, "report_path": outcome.report_path,
        "content_version": dir_hash(data_dir), "rows": len(df), "parameters": params, "run_id": ctx.run_id,
        "validated_at": dt.datetime.now(dt.timezone.utc).isoformat(), **(extra or {}),
    }
    path = verdict_path(settings, subject, ctx.ds)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(verdict, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, path)
    log.info("validation report (Data Docs) for %s %s: %s", subject, ctx.ds, outcome.report_path)
    if not outcome.success:
        raise ValidationFailed(
            f"{data_dir}: suite {outcome.suite} failed {len(outcome.failed)} of {outcome.evaluated} expectations: "
            f"{outcome.failure_summary()}; report: {outcome.report_path}", outcome.report_path)
    return verdict


def _need(path: Path, what: str, hint: str) -> Path:
    if not path.is_dir():
        raise InputDataError(f"{path}: no {what}; run `{hint}` first")
    return path


def validate_raw(ctx: RunContext) -> list[dict]:
    settings = ctx.settings
    day_start, day_end = day_bounds(ctx.logical_date, settings.param("run.timezone"))
    hint = f"jobcast extract --date {ctx.ds}"
    post_dir = _need(partition(settings.data_dir, "raw", "job_postings", date=ctx.ds), "raw postings", hint)
    ev_dir = _need(partition(settings.data_dir, "raw", "events", date=ctx.ds), "raw events", hint)
    postings = pq.read_table(post_dir).to_pandas()
    postings["seconds_before_day_end"] = (pd.Timestamp(day_end) - postings["posted_at"]).dt.total_seconds()
    prev = read_manifest(partition(settings.data_dir, "raw", "job_postings",
                                   date=(ctx.logical_date - dt.timedelta(days=1)).isoformat()))
    min_rows = max(1, int(prev.get("rows", 0) * float(settings.param("validate.raw.min_rows_vs_previous_day"))))
    events = pq.read_table(ev_dir).to_pandas()
    events["seconds_into_day"] = (events["occurred_at"] - pd.Timestamp(day_start)).dt.total_seconds()
    return [
        _gate(ctx, "raw_job_postings", "raw_job_postings", post_dir, postings, {"min_rows": min_rows}),
        _gate(ctx, "raw_events", "raw_events", ev_dir, events, {}),
    ]


def validate_features(ctx: RunContext) -> dict:
    settings = ctx.settings
    feat_dir = _need(partition(settings.data_dir, "features", date=ctx.ds), "features", f"jobcast features --date {ctx.ds}")
    manifest = read_manifest(feat_dir)
    df = pq.read_table(feat_dir, columns=["job_id", "posting_age_days", "title_len", "prefecture", "salary_label"]).to_pandas()
    expected = int(manifest.get("raw_rows", -1)) - int(manifest.get("dropped_null_title", 0))
    return _gate(ctx, "features", "features", feat_dir, df, {
        "expected_rows": expected,
        "salary_min_plausible": float(settings.param("clean.salary_min_plausible")),
        "salary_max_plausible": float(settings.param("clean.salary_max_plausible")),
    })


def validate_predictions(ctx: RunContext, task: str) -> dict:
    settings = ctx.settings
    preds = _need(partition(settings.data_dir, "predictions", task, date=ctx.ds), "predictions",
                  f"jobcast score --task {task} --date {ctx.ds}")
    manifest = read_manifest(preds)
    df = pq.read_table(preds).to_pandas()
    bounds = settings.param(f"validate.{task}")
    params = {"expected_rows": int(manifest.get("expected_rows") or -1),
              "salary_min": float(bounds["min"]), "salary_max": float(bounds["max"])}
    return _gate(ctx, task, f"predictions_{task}", preds, df, params,
                 {"task": task, "model_version": manifest.get("model_version"), "predictions_version": dir_hash(preds)})


def run(ctx: RunContext, *, task: str = "salary", layer: str = "predictions") -> StepResult:
    if layer not in LAYERS:
        raise InputDataError(f"validate --layer {layer}: expected one of {LAYERS}")
    with timed_step("validate", ctx, task if layer == "predictions" else layer) as res:
        if layer == "raw":
            verdicts = validate_raw(ctx)
        elif layer == "features":
            verdicts = [validate_features(ctx)]
        else:
            verdicts = [validate_predictions(ctx, task)]
        res.rows = sum(v["rows"] for v in verdicts)
        res.paths.update({f"report_{v['subject']}": str(v["report_path"]) for v in verdicts})
        res.paths.update({f"verdict_{v['subject']}": str(verdict_path(ctx.settings, v["subject"], ctx.ds)) for v in verdicts})
        res.metrics["expectations"] = sum(v["evaluated"] for v in verdicts)
    return res
