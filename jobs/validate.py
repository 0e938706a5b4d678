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
                                 batch_name=f"{subject}/dt={ctx.ds}", parameters=params, run_name=ctx.run_id,
                                 keep_history=int(settings.param("validate.data_docs_keep_runs")))
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


def live_reference(settings, task: str, column: str, sample: int = 50_000) -> dict | None:
    """Quantile bins, median and size of the live batch of a task, or None when nothing is live yet."""
    import numpy as np
    from psycopg2 import sql

    from jobcast.db.conn import connect
    from jobcast.report import VIEWS

    conn = connect(settings, application_name="jobcast-validate")
    try:
        with conn.cursor() as cur:
            schema, view = VIEWS[task].split(".")
            cur.execute(sql.SQL("select count(*) from {}").format(sql.Identifier(schema, view)))
            rows = cur.fetchone()[0]
            if rows == 0:
                return None
            cur.execute(sql.SQL("select {} from {} order by random() limit %s").format(
                sql.Identifier(column), sql.Identifier(schema, view)), (sample,))
            values = np.array([r[0] for r in cur.fetchall()], dtype=float)
    finally:
        conn.close()
    edges = np.unique(np.quantile(values, np.linspace(0, 1, 11)))
    if len(edges) < 2:  # a constant live batch: one narrow bin around it
        edges = np.array([values[0] * 0.999, values[0] * 1.001])
    weights, _ = np.histogram(values, bins=edges)
    return {"rows": rows, "median": float(np.median(values)),
            "partition": {"bins": edges.tolist(), "weights": (weights / weights.sum()).tolist()}}


def validate_predictions(ctx: RunContext, task: str) -> dict:
    settings = ctx.settings
    preds = _need(partition(settings.data_dir, "predictions", task, date=ctx.ds), "predictions",
                  f"jobcast score --task {task} --date {ctx.ds}")
    manifest = read_manifest(preds)
    df = pq.read_table(preds).to_pandas()
    bounds = settings.param(f"validate.{task}")
    params = {"expected_rows": int(manifest.get("expected_rows") or -1),
              "salary_min": float(bounds["min"]), "salary_max": float(bounds["max"])}
    extra = {"task": task, "model_version": manifest.get("model_version")}
    verdict = _gate(ctx, task, f"predictions_{task}", preds, df, params, extra)
    drift_suite = settings.root / "expectations" / f"drift_{task}.json"
    live = live_reference(settings, task, "salary_p50") if drift_suite.is_file() else None
    if live is None:
        log.info("%s: no live batch yet, drift gate skipped", task)
        return verdict
    d = settings.param("validate.drift")
    drift_params = {
        "live_partition": live["partition"], "max_kl": float(d["max_kl"]),
        "median_min": live["median"] * (1 - float(d["max_median_shift"])),
        "median_max": live["median"] * (1 + float(d["max_median_shift"])),
        "min_rows": int(live["rows"] * float(d["min_rows_ratio"])), "max_rows": int(live["rows"] * float(d["max_rows_ratio"])),
        "min_non_null": 1.0 - float(d["max_null_rate"]),
    }
    try:
        _gate(ctx, f"{task}_drift", f"drift_{task}", preds, df, drift_params, extra)
    except ValidationFailed:
        # The predictions verdict is what publish reads: record the drift failure there too.
        drift = read_verdict(settings, f"{task}_drift", ctx.ds)
        verdict.update(success=False, failed=verdict["failed"] + drift["failed"], report_path=drift["report_path"])
        path = verdict_path(settings, task, ctx.ds)
        path.write_text(json.dumps(verdict, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
        raise
    return verdict


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
