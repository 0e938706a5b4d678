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
import pyarrow as pa
import pyarrow.parquet as pq

from jobcast.context import RunContext, StepResult, timed_step
from jobcast.errors import ConfigError, InputDataError, ValidationFailed
from jobcast.sources import day_bounds
from jobcast.storage import check_parquet, dir_hash, file_digests, partition, read_manifest

log = logging.getLogger(__name__)

LAYERS = ("raw", "features", "predictions")


def verdict_path(settings, subject: str, date: str) -> Path:
    return settings.reports_dir / "validations" / subject / f"dt={date}.json"


def read_verdict(settings, subject: str, date: str) -> dict | None:
    path = verdict_path(settings, subject, date)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _gate(ctx: RunContext, subject: str, suite: str | Path, data_dir: Path, df: pd.DataFrame, params: dict[str, Any],
          extra: dict[str, Any] | None = None, also_failed: list[str] | None = None) -> dict:
    """Run the suite; `also_failed` are failures of checks made outside GX (they fail the gate the same way)."""
    from jobcast.validation.gx import validate_dataframe

    settings = ctx.settings
    suite_path = suite if isinstance(suite, Path) else settings.root / "expectations" / f"{suite}.json"
    outcome = validate_dataframe(df, suite_path, settings.reports_dir,
                                 batch_name=f"{subject}/dt={ctx.ds}", parameters=params, run_name=ctx.run_id,
                                 keep_history=settings.param_number("validate.data_docs_keep_runs", int))
    also_failed = list(also_failed or [])
    verdict = {
        "subject": subject, "suite": outcome.suite, "logical_date": ctx.ds, "success": outcome.success and not also_failed,
        "evaluated": outcome.evaluated, "failed": outcome.failed, "report_path": outcome.report_path,
        "content_version": dir_hash(data_dir), "rows": len(df) if isinstance(df, pd.DataFrame) else df.count(),
        "parameters": params, "run_id": ctx.run_id,
        "validated_at": dt.datetime.now(dt.timezone.utc).isoformat(), **(extra or {}),
    }
    path = write_verdict(settings, subject, ctx.ds, verdict)
    log.info("validation report (Data Docs) for %s %s: %s", subject, ctx.ds, outcome.report_path)
    if not outcome.success:
        raise ValidationFailed(
            f"{data_dir}: suite {outcome.suite} failed {len(outcome.failed)} of {outcome.evaluated} expectations: "
            f"{outcome.failure_summary()}; report: {outcome.report_path}", outcome.report_path)
    if also_failed:
        raise ValidationFailed(f"{data_dir}: " + "; ".join(also_failed) + f"; report: {path}", str(path))
    return verdict


def write_verdict(settings, subject: str, date: str, verdict: dict) -> Path:
    """Atomically (a reader sees the old verdict or the new one, never half a file)."""
    path = verdict_path(settings, subject, date)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(verdict, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _need(path: Path, what: str, hint: str) -> Path:
    if not path.is_dir():
        raise InputDataError(f"{path}: no {what}; run `{hint}` first")
    return path


def validate_raw(ctx: RunContext) -> list[dict]:
    settings = ctx.settings
    _, day_end = day_bounds(ctx.logical_date, settings.param("run.timezone"))
    hint = f"jobcast extract --date {ctx.ds}"
    post_dir = _need(partition(settings.data_dir, "raw", "job_postings", date=ctx.ds), "raw postings", hint)
    ev_dir = _need(partition(settings.data_dir, "raw", "events", date=ctx.ds), "raw events", hint)
    postings = with_seconds_before(ctx, frame(ctx, post_dir), "posted_at", day_end)
    prev = read_manifest(partition(settings.data_dir, "raw", "job_postings",
                                   date=(ctx.logical_date - dt.timedelta(days=1)).isoformat()))
    min_rows = max(1, int(prev.get("rows", 0) * settings.param_number("validate.raw.min_rows_vs_previous_day", float)))
    files, inherited = events_to_check(settings, ctx.logical_date, ev_dir)
    events = with_seconds_before(ctx, frame(ctx, ev_dir, files=[ev_dir / f for f in files[1]] if inherited else None),
                                 "occurred_at", day_end)
    max_seconds = (settings.param_number("features.event_window_days", int) + 1) * 86400
    types, mostly = board_employment_types(settings, ctx)
    return [
        _gate(ctx, "raw_job_postings", "raw_job_postings", post_dir, postings,
              {"min_rows": min_rows, "employment_types": types, "employment_types_mostly": mostly}),
        _gate(ctx, "raw_events", "raw_events", ev_dir, events, {"max_seconds": max_seconds},
              extra={"files": files[0], "checked_files": files[1], "inherited_from": inherited}),
    ]


def events_to_check(settings, day: dt.date, ev_dir: Path) -> tuple[tuple[dict[str, str], list[str]], str | None]:
    """Which files of the day's events snapshot the raw gate reads: ({file: md5} of all, [files to check]) and
    the day whose verdict vouches for the others. A file with the same name and bytes as one the day before's
    passing raw_events verdict covered was checked there (jobs/extract.py links the older days' files, and
    writes a re-read day without late events byte for byte the same), so a daily gate reads the newest days'
    events, not the window. Without such a verdict (a first day, a failed or
    missing gate the day before, a snapshot from before files per day) every file is checked."""
    mine = file_digests(ev_dir)
    prev_day = (day - dt.timedelta(days=1)).isoformat()
    prev = read_verdict(settings, "raw_events", prev_day) or {}
    vouched = prev.get("files") if prev.get("success") else None
    if not vouched:
        return (mine, sorted(mine)), None
    fresh = sorted(f for f, h in mine.items() if vouched.get(f) != h)
    if not fresh or len(fresh) == len(mine):
        return (mine, sorted(mine)), None
    return (mine, fresh), prev_day


def frame(ctx: RunContext, path: Path, columns: list[str] | None = None, files: list[Path] | None = None):
    """A partition to validate (or some of its `files`): a Spark DataFrame from validate.spark_min_rows rows up
    (GX computes its metrics in Spark; a big board's tables never reach pandas), pandas below (GX on Spark pays
    about a Spark job per expectation, seconds a suite, for tables that fit in memory many times over)."""
    check_parquet(path, f"rerun the step that wrote {path.parent.name}/{path.name}")
    rows = read_manifest(path).get("rows") if files is None else sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    if rows is None or int(rows) >= ctx.settings.param_number("validate.spark_min_rows", int):
        df = ctx.spark().read.parquet(*(str(f) for f in files or [path]))
        return df.select(*columns) if columns else df
    if files is not None:
        return pa.concat_tables([pq.read_table(f, columns=columns) for f in files]).to_pandas()
    return pq.read_table(path, columns=columns).to_pandas()


def with_seconds_before(ctx: RunContext, df, column: str, day_end: dt.datetime):
    """df with seconds_before_day_end = day end - df[column], in seconds (pandas or Spark)."""
    if isinstance(df, pd.DataFrame):
        return df.assign(seconds_before_day_end=(pd.Timestamp(day_end) - df[column]).dt.total_seconds())
    from pyspark.sql import functions as F

    return df.withColumn("seconds_before_day_end", F.lit(day_end).cast("timestamp").cast("double") - F.col(column).cast("double"))


def board_employment_types(settings, ctx: RunContext) -> tuple[list[str], float]:
    """The allowed employment types: params.yaml board.employment_types, or (null) the board's own history,
    the values in the previous day's snapshot (a new value on 1% of postings passes; a new vocabulary fails).
    With neither (a board's first day and no list), today's values: nothing to compare with yet."""
    configured = settings.param("board.employment_types")
    if configured is not None:
        if not isinstance(configured, list) or not all(isinstance(v, str) and v for v in configured):
            raise ConfigError(f"params.yaml board.employment_types={configured!r}: expected a list of names, or null")
        return configured, 1.0
    for day in (ctx.logical_date - dt.timedelta(days=1), ctx.logical_date):
        path = partition(settings.data_dir, "raw", "job_postings", date=day.isoformat())
        if path.is_dir():
            values = pq.read_table(path, columns=["employment_type"]).column(0).unique().to_pylist()
            return sorted(v for v in values if v is not None), 0.99 if day < ctx.logical_date else 1.0
    return [], 1.0


EVENT_FEATURES = ("views_7d", "applies_7d", "views_28d", "applies_28d", "job_cvr_28d", "company_cvr_28d", "category_cvr_28d")


def validate_features(ctx: RunContext) -> dict:
    settings = ctx.settings
    feat_dir = _need(partition(settings.data_dir, "features", date=ctx.ds), "features", f"jobcast features --date {ctx.ds}")
    manifest = read_manifest(feat_dir)
    df = frame(ctx, feat_dir, ["job_id", "posting_age_days", "title_len", "prefecture", "salary_label", *EVENT_FEATURES])
    expected = int(manifest.get("raw_rows", -1)) - int(manifest.get("dropped_null_title", 0))
    shift = feature_shift(ctx, feat_dir)
    enforce = bool(settings.param("validate.features_shift.enforce"))
    failed = [f"{s['task']} model {s['model_version']}: {s['message']}" for s in shift] if enforce else []
    for s in shift:
        log.warning("features %s: input shift against the %s champion %s: %s%s", ctx.ds, s["task"], s["model_version"],
                    s["message"], "" if enforce else " (validate.features_shift.enforce is false: not failing)")
    return _gate(ctx, "features", "features", feat_dir, df, {
        "expected_rows": expected,
        "salary_min_plausible": settings.param_number("clean.salary_min_plausible", float),
        "salary_max_plausible": settings.param_number("clean.salary_max_plausible", float),
    }, extra={"shift": shift, "shift_enforced": enforce}, also_failed=failed)


def feature_shift(ctx: RunContext, feat_dir: Path) -> list[dict]:
    """The day's features against the training profile of each task's champion (jobcast.models.profile);
    thresholds in params.yaml validate.features_shift. A task without a champion has nothing to compare."""
    from jobcast import tasks
    from jobcast.models import registry
    from jobcast.models.profile import shifts

    settings = ctx.settings
    thresholds = {k: float(v) for k, v in settings.param("validate.features_shift").items() if k != "enforce"}
    refs = {}
    for task in tasks.names():
        champ = registry.champion(settings, task)
        if champ is not None:
            profile = registry.read_metadata(registry.version_dir(settings, task, champ["version"])).get("profile")
            if profile:
                refs[task] = (champ["version"], profile)
    if not refs:
        return []
    # One read of every column any champion profiled (a column missing today is reported by `shifts`).
    available = set(pq.read_schema(next(feat_dir.glob("*.parquet"))).names)
    wanted = sorted({c for _, ref in refs.values() for c in ref["columns"]} & available)
    frame = pq.read_table(feat_dir, columns=wanted).to_pandas()
    found = []
    for task, (version, ref) in refs.items():
        found += [{"task": task, "model_version": version, **s} for s in shifts(ref, frame, thresholds)]
    return found


def live_reference(settings, task: str, sample: int = 50_000) -> dict | None:
    """The live batch of a task as the drift gate's reference, or None when nothing is live yet.

    A number (salary_p50, cvr): decile bins of a random sample of up to `sample` rows, and its median. A
    category: the exact share of each category in the live batch (a GROUP BY over one partition)."""
    import numpy as np
    from psycopg2 import sql

    from jobcast.db.conn import connect
    from jobcast.tasks import get

    t = get(task)
    view, column = sql.Identifier("predictions", t.view), sql.Identifier(t.drift_column)
    conn = connect(settings, application_name="jobcast-validate")
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("select count(*) from {}").format(view))
            rows = cur.fetchone()[0]
            if rows == 0:
                return None
            if t.drift_categorical:
                cur.execute(sql.SQL("select {c}, count(*) from {v} where {c} is not null group by 1 order by 1").format(
                    c=column, v=view))
                counts = cur.fetchall()
            else:
                cur.execute(sql.SQL("select {c} from {v} where {c} is not null order by random() limit %s").format(
                    c=column, v=view), (sample,))
                values = np.array([r[0] for r in cur.fetchall()], dtype=float)
    finally:
        conn.close()
    if t.drift_categorical:
        total = sum(n for _, n in counts)
        return {"rows": rows, "partition": {"values": [v for v, _ in counts], "weights": [n / total for _, n in counts]}}
    edges = np.unique(np.quantile(values, np.linspace(0, 1, 11)))
    if len(edges) < 2:  # a constant live batch: one narrow bin around it
        edges = np.array([values[0] * 0.999, values[0] * 1.001])
    weights, _ = np.histogram(values, bins=edges)
    return {"rows": rows, "median": float(np.median(values)),
            "partition": {"bins": edges.tolist(), "weights": (weights / weights.sum()).tolist()}}


def drift_thresholds(settings, task: str) -> dict[str, float]:
    """params.yaml validate.drift: the keys at its top level are the defaults, validate.drift.<task> overrides them."""
    d = settings.param("validate.drift")
    merged = {k: v for k, v in d.items() if not isinstance(v, dict)}
    merged.update(d.get(task) or {})
    return {k: float(v) for k, v in merged.items()}


def drift_parameters(settings, task: str, live: dict) -> dict[str, Any]:
    """Runtime parameters of expectations/drift_<task>.json from the live reference and the thresholds."""
    d = drift_thresholds(settings, task)
    params = {"live_partition": live["partition"], "max_kl": d["max_kl"],
              "min_rows": int(live["rows"] * d["min_rows_ratio"]), "max_rows": int(live["rows"] * d["max_rows_ratio"]),
              "min_non_null": 1.0 - d["max_null_rate"]}
    if "median" in live:
        params.update(median_min=live["median"] * (1 - d["max_median_shift"]),
                      median_max=live["median"] * (1 + d["max_median_shift"]))
    return params


def _reasons_ok(text) -> bool:
    """A reasons JSON (jobcast.models.reasons) that adds up: 1-3 named, signed effects, and base + effects + rest
    equals the value (to the rounding of 6 decimals)."""
    try:
        r = json.loads(text)
        top = r["top"]
        if not (isinstance(top, list) and 1 <= len(top) <= 3):
            return False
        if not all(isinstance(e.get("name"), str) and e["name"].strip() and isinstance(e.get("effect"), (int, float))
                   for e in top):
            return False
        total = float(r["base"]) + sum(float(e["effect"]) for e in top) + float(r["rest"])
        return abs(total - float(r["value"])) <= 1e-4 * max(1.0, abs(float(r["value"])))
    except (TypeError, ValueError, KeyError, AttributeError):
        return False


def add_reason_checks(df: pd.DataFrame) -> pd.DataFrame:
    """reasons_consistent, derived for the suites (GX cannot look inside JSON): every row's reasons add up."""
    if "reasons" not in df.columns:
        return df
    if "reasons_consistent" in df.columns:
        raise InputDataError("predictions have a column reasons_consistent, which validation derives itself")
    return df.assign(reasons_consistent=[_reasons_ok(t) for t in df["reasons"]])


def validate_predictions(ctx: RunContext, task: str) -> dict:
    from jobcast.tasks import get

    declared = get(task)
    task = declared.name
    settings = ctx.settings
    preds = _need(partition(settings.data_dir, "predictions", task, date=ctx.ds), "predictions",
                  f"jobcast score --task {task} --date {ctx.ds}")
    manifest = read_manifest(preds)
    # The suite checks what publish copies; the feature hash is scoring's own bookkeeping (jobs/score.py).
    from jobs.score import FEATURE_HASH

    check_parquet(preds, f"`jobcast score --task {task} --date {ctx.ds} --full`")
    table = pq.read_table(preds)
    table = table.drop_columns([FEATURE_HASH]) if FEATURE_HASH in table.column_names else table
    manifest_rows = int(manifest.get("expected_rows") or -1)
    df = table.to_pandas(split_blocks=True, self_destruct=True)  # the Arrow buffers go as pandas takes them
    del table
    df, params = declared.suite_parameters(settings, preds, manifest, add_reason_checks(df))
    params = {"expected_rows": manifest_rows, **params}
    drift_suite = declared.suite(settings.root, "drift")
    # Fail closed: the predictions verdict says the drift gate is required, and publish accepts it only next to
    # a drift verdict of the same run and content. A drift gate that errors (the live batch unreadable, a GX or
    # config error) or is killed leaves no such verdict: the batch is not publishable.
    extra = {"task": task, "model_version": manifest.get("model_version"),
             "drift": "required" if drift_suite.is_file() else "no drift suite"}
    verdict = _gate(ctx, task, declared.suite(settings.root, "predictions"), preds, df, params, extra)
    if not drift_suite.is_file():
        return verdict
    live = live_reference(settings, task)
    if live is None:
        log.info("%s: no live batch yet, drift gate skipped", task)
        write_verdict(settings, f"{task}_drift", ctx.ds, {
            "subject": f"{task}_drift", "suite": f"drift_{task}", "logical_date": ctx.ds, "success": True,
            "skipped": "no live batch to compare with", "evaluated": 0, "failed": [], "report_path": None,
            "content_version": verdict["content_version"], "run_id": ctx.run_id,
            "validated_at": dt.datetime.now(dt.timezone.utc).isoformat(), **extra})
        return verdict
    try:
        _gate(ctx, f"{task}_drift", drift_suite, preds, df, drift_parameters(settings, task, live), extra)
    except ValidationFailed:
        # The predictions verdict is what people read first: record the drift failure there too.
        drift = read_verdict(settings, f"{task}_drift", ctx.ds)
        verdict.update(success=False, failed=verdict["failed"] + drift["failed"], report_path=drift["report_path"])
        write_verdict(settings, task, ctx.ds, verdict)
        raise
    return verdict


def run(ctx: RunContext, *, task: str = "salary", layer: str = "predictions") -> StepResult:
    if layer not in LAYERS:
        raise InputDataError(f"validate --layer {layer}: expected one of {LAYERS}")
    with timed_step("validate", ctx, task if layer == "predictions" else layer) as res:
        if layer == "raw":
            try:
                verdicts = validate_raw(ctx)
            except ValidationFailed as exc:  # the snapshot is kept as taken: say how to take it again once fixed
                raise ValidationFailed(f"{exc}; once the source is fixed, re-take the snapshot: `jobcast extract --date "
                                       f"{ctx.ds} --refresh` (Airflow: trigger with 'Re-take the snapshot')",
                                       exc.report_path) from exc
        elif layer == "features":
            verdicts = [validate_features(ctx)]
        else:
            verdicts = [validate_predictions(ctx, task)]
        res.rows = sum(v["rows"] for v in verdicts)
        res.paths.update({f"report_{v['subject']}": str(v["report_path"]) for v in verdicts})
        res.paths.update({f"verdict_{v['subject']}": str(verdict_path(ctx.settings, v["subject"], ctx.ds)) for v in verdicts})
        res.metrics["expectations"] = sum(v["evaluated"] for v in verdicts)
    return res
