"""train: fit a model on a window of features, record it in the registry, promote it if it passes the gate."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from jobcast.context import RunContext, StepResult, timed_step
from jobcast.errors import InputDataError, ModelError
from jobcast.models import registry, task_models as tasks
from jobcast.sources import day_bounds
from jobcast.storage import atomic_dir, dvc_hash, partition, read_manifest

log = logging.getLogger(__name__)

MIN_HOLDOUT = 30
MIN_TRAIN = 200


def load_window(ctx: RunContext, window_days: int, columns: list[str] | None = None) -> tuple[pd.DataFrame, dict[str, str], dict]:
    """Feature rows of the window's days (one per open posting and day), with each partition's DVC hash."""
    settings = ctx.settings
    days = [ctx.logical_date - dt.timedelta(days=i) for i in reversed(range(window_days))]
    paths = [partition(settings.data_dir, "features", date=d.isoformat()) for d in days]
    missing = [str(p) for p in paths if not p.is_dir()]
    if missing:
        raise InputDataError(f"training window of {window_days} days ending {ctx.ds}: missing feature partitions "
                             f"{missing}; run `jobcast window --date {ctx.ds} --days {window_days}` first")
    from jobcast.features.transforms import FEATURES_VERSION

    manifests = {p: read_manifest(p) for p in paths}
    stale = [str(p) for p, m in manifests.items() if m.get("features_version") != FEATURES_VERSION]
    if stale:
        raise InputDataError(f"training window ending {ctx.ds}: {len(stale)} feature partitions were built by older feature "
                             f"code (e.g. {stale[0]}); expected features_version {FEATURES_VERSION}; rebuild them with "
                             f"`jobcast window --date {ctx.ds} --days {window_days}`")
    texts = {json.dumps(m.get("text"), sort_keys=True) for m in manifests.values()}
    if len(texts) != 1:
        raise InputDataError(f"training window ending {ctx.ds}: partitions hash text differently {sorted(texts)}; "
                             f"rebuild them with `jobcast window --date {ctx.ds} --days {window_days} --force`")
    df = pd.concat([pq.read_table(p, columns=columns).to_pandas() for p in paths], ignore_index=True)
    return df, {p.name: dvc_hash(p) for p in paths}, json.loads(texts.pop())


def day_outcomes(ctx: RunContext, day: dt.date) -> pd.DataFrame:
    """Views and applies per posting on `day`, from that day's raw events snapshot (the CVR labels)."""
    settings = ctx.settings
    path = partition(settings.data_dir, "raw", "events", date=day.isoformat())
    if not path.is_dir():
        raise InputDataError(f"{path}: no raw events for {day}; run `jobcast extract --date {day}` first")
    start, end = day_bounds(day, settings.param("run.timezone"))
    ev = pq.read_table(path, columns=["job_id", "event_type", "occurred_at"],
                       filters=[("occurred_at", ">=", pd.Timestamp(start)), ("occurred_at", "<", pd.Timestamp(end))]).to_pandas()
    out = ev.assign(views=(ev["event_type"] == "view").astype(float), applies=(ev["event_type"] == "apply").astype(float))
    return out.groupby("job_id", as_index=False)[["views", "applies"]].sum()


def training_frame(ctx: RunContext, task: str, window: pd.DataFrame, holdout_days: int) -> tuple[pd.DataFrame, pd.Series]:
    """The task's labelled rows of the window and the time-based holdout mask (later rows are the holdout)."""
    _, day_end = day_bounds(ctx.logical_date, ctx.settings.param("run.timezone"))
    if task == "cvr":
        window = window.copy()
        window["logical_date"] = pd.to_datetime(window["logical_date"]).dt.date
        parts = []
        for day, rows in window.groupby("logical_date", sort=True):
            parts.append(rows.merge(day_outcomes(ctx, day), on="job_id", how="left"))
        frame = tasks.cvr_rows(pd.concat(parts, ignore_index=True).fillna({"views": 0.0, "applies": 0.0}))
        first_holdout = ctx.logical_date - dt.timedelta(days=holdout_days - 1)
        return frame, frame["logical_date"] >= first_holdout
    # Posting-level tasks: each posting once, as of its latest snapshot in the window.
    latest = window.sort_values(["job_id", "logical_date"]).drop_duplicates("job_id", keep="last")
    frame = tasks.salary_rows(latest) if task == "salary" else tasks.category_rows(latest)
    cutoff = pd.Timestamp(day_end - dt.timedelta(days=holdout_days)).tz_convert("UTC")
    # Spark writes UTC instants that pyarrow may read back as naive; pin them to UTC before comparing.
    return frame, pd.to_datetime(frame["posted_at"], utc=True) >= cutoff


def run(ctx: RunContext, *, task: str = "salary") -> StepResult:
    from jobcast.models.matrix import FeatureSchema
    from jobcast.models.profile import profile

    tasks.check_task(task)
    settings = ctx.settings
    params = dict(settings.param(f"train.{task}"))
    window_days = int(params.get("window_days", settings.param("train.window_days")))
    holdout_days = int(settings.param("train.holdout_days"))
    tolerance = float(settings.param("train.gate_tolerance"))

    with timed_step("train", ctx, task) as res:
        window, versions, text = load_window(ctx, window_days)
        frame, is_holdout = training_frame(ctx, task, window, holdout_days)
        train_df, holdout = frame[~is_holdout], frame[is_holdout]
        if len(train_df) < MIN_TRAIN or len(holdout) < MIN_HOLDOUT:
            raise InputDataError(
                f"{task} training window of {window_days} days ending {ctx.ds}: {len(train_df)} labelled rows for training "
                f"and {len(holdout)} in the {holdout_days}-day holdout; expected >= {MIN_TRAIN} and >= {MIN_HOLDOUT} "
                "(more data or a longer train.window_days)")

        schema = FeatureSchema.fit(train_df, text, task)
        inputs = profile(train_df, list(schema.numeric), list(schema.categorical))  # the features gate compares with it
        boosters, extras = tasks.fit(task, train_df, schema, params)
        # The training data version: one md5 over the DVC hashes of the window's partitions (each kept below).
        data_version = hashlib.md5(json.dumps(versions, sort_keys=True).encode()).hexdigest()
        code_version = registry.code_version(settings.root)
        # Same inputs, params and code (commit plus the training code's bytes, so a dirty tree counts) -> same id.
        code_digest = hashlib.md5(b"".join(f.read_bytes() for f in sorted(Path(tasks.__file__).parent.glob("*.py")))
                                  + Path(__file__).read_bytes()).hexdigest()
        version = f"{ctx.logical_date:%Y%m%d}-" + hashlib.sha1(
            json.dumps([task, data_version, params, text, code_version, code_digest], sort_keys=True).encode()).hexdigest()[:8]

        final = registry.version_dir(settings, task, version)
        with atomic_dir(final) as tmp:
            tmp.mkdir(parents=True)
            extras = tasks.save(tmp, boosters, schema, extras)
            metrics = {**tasks.evaluate(task, tasks.Predictor.load(task, tmp), holdout), **tasks.baseline(task, train_df, holdout),
                       "n_train": int(len(train_df)), "n_holdout": int(len(holdout)),
                       "best_iteration": {k: int(b.best_iteration or b.current_iteration()) for k, b in boosters.items()}}
            meta = {
                "task": task, "version": version, "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                "logical_date": ctx.ds, "window_days": window_days, "holdout_days": holdout_days,
                "features": schema.columns, "params": params, "metrics": metrics, **extras, "profile": inputs,
                "data_version": data_version, "feature_partitions": versions, "code_version": code_version,
                "run_id": ctx.run_id,
            }
            (tmp / registry.METADATA).write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")

        promoted, reason = gate(ctx, task, version, holdout, metrics, tolerance)
        if promoted:
            registry.set_champion(settings, task, version, reason)
        log.info("%s model %s: %s", task, version, reason)
        _write_metrics(settings, task, version, metrics, promoted, reason)
        res.rows = len(train_df)
        res.paths["model"] = str(final)
        res.ids.update(model_version=version, promoted=promoted)
        res.metrics.update({k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)})
        res.metrics["reason"] = reason
    return res


def gate(ctx: RunContext, task: str, version: str, holdout: pd.DataFrame, metrics: dict, tolerance: float) -> tuple[bool, str]:
    """Promote unless the champion does better on this same holdout by more than the (relative) tolerance."""
    metric, higher_better = tasks.GATE_METRIC[task]
    new = metrics[metric]
    champ = registry.champion(ctx.settings, task)
    if champ is None:
        return True, f"promoted: no champion yet (holdout {metric} {new:.4g})"
    if champ["version"] == version:
        return True, "promoted: same version as the champion (identical data, params and code)"
    try:
        champ_model = tasks.Predictor.load(task, registry.version_dir(ctx.settings, task, champ["version"]))
        champ_model.schema.check(list(holdout.columns), None, f"champion {champ['version']}")
        old = tasks.evaluate(task, champ_model, holdout)[metric]
    except ModelError as exc:
        return True, f"promoted: champion {champ['version']} cannot score these features ({exc})"
    allowed = old * (1 - tolerance) if higher_better else old * (1 + tolerance)
    ok = new >= allowed if higher_better else new <= allowed
    compare = f"holdout {metric} {new:.4g} vs champion {champ['version']} {old:.4g} (tolerance {tolerance:.0%})"
    if ok:
        return True, f"promoted: {compare}"
    return False, f"kept champion {champ['version']}: new model is worse by more than the tolerance: {compare}"


def _write_metrics(settings, task: str, version: str, metrics: dict, promoted: bool, reason: str) -> None:
    """DVC metrics of the last training run: the scalars (curves and matrices are in the model's metadata)."""
    out = settings.root / "metrics" / f"train_{task}.json"
    out.parent.mkdir(exist_ok=True)
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    out.write_text(json.dumps({"version": version, "promoted": promoted, **scalars}, indent=2), encoding="utf-8")
