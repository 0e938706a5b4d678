"""train: fit a model on a window of features, record it in the registry, promote it if it passes the gate."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging

import pandas as pd
import pyarrow.parquet as pq

from jobcast.context import RunContext, StepResult, timed_step
from jobcast.errors import InputDataError, ModelError
from jobcast.models import registry
from jobcast.sources import day_bounds
from jobcast.storage import atomic_dir, dir_hash, partition, read_manifest

log = logging.getLogger(__name__)

MIN_HOLDOUT = 30
MIN_TRAIN = 200


def load_window(ctx: RunContext, window_days: int) -> tuple[pd.DataFrame, list[str], int]:
    """Features of the window's days, one row per posting (its latest snapshot)."""
    settings = ctx.settings
    paths = [partition(settings.data_dir, "features", date=(ctx.logical_date - dt.timedelta(days=i)).isoformat())
             for i in range(window_days)]
    missing = [str(p) for p in paths if not p.is_dir()]
    if missing:
        raise InputDataError(f"training window of {window_days} days ending {ctx.ds}: missing feature partitions "
                             f"{missing}; run `jobcast features --date <day>` for them first")
    buckets = {read_manifest(p).get("text_hash_buckets") for p in paths}
    if len(buckets) != 1:
        raise InputDataError(f"training window ending {ctx.ds}: partitions use different text_hash_buckets {buckets}")
    frames = [pq.read_table(p).to_pandas() for p in paths]
    df = pd.concat(frames, ignore_index=True)
    df = df.sort_values(["job_id", "logical_date"]).drop_duplicates("job_id", keep="last")
    return df, [dir_hash(p) for p in paths], int(buckets.pop())


def run(ctx: RunContext, *, task: str = "salary") -> StepResult:
    from jobcast.models import salary
    from jobcast.models.matrix import FeatureSchema

    if task != "salary":
        raise ModelError(f"train --task {task}: only 'salary' is implemented so far")
    settings = ctx.settings
    params = dict(settings.param(f"train.{task}"))
    window_days = int(settings.param("train.window_days"))
    holdout_days = int(settings.param("train.holdout_days"))
    tolerance = float(settings.params.get("train", {}).get("gate_tolerance", 0.02))

    with timed_step("train", ctx, task) as res:
        df, versions, buckets = load_window(ctx, window_days)
        labelled = df[df["salary_label"].notna()]
        _, day_end = day_bounds(ctx.logical_date, settings.param("run.timezone"))
        cutoff = pd.Timestamp(day_end - dt.timedelta(days=holdout_days)).tz_convert("UTC")
        # Spark writes UTC instants that pyarrow may read back as naive; pin them to UTC before comparing.
        is_holdout = pd.to_datetime(labelled["posted_at"], utc=True) >= cutoff
        train_df, holdout = labelled[~is_holdout], labelled[is_holdout]
        if len(train_df) < MIN_TRAIN or len(holdout) < MIN_HOLDOUT:
            raise InputDataError(
                f"features for {ctx.ds} (window {window_days}d): {len(train_df)} labelled postings before {cutoff} and "
                f"{len(holdout)} after; expected >= {MIN_TRAIN} and >= {MIN_HOLDOUT} (more data or a longer window)")

        schema = FeatureSchema.fit(train_df, buckets)
        booster = salary.train(train_df, schema, params)
        data_version = hashlib.md5("".join(versions).encode()).hexdigest()
        code_version = registry.code_version(settings.root)
        version = f"{ctx.logical_date:%Y%m%d}-" + hashlib.sha1(
            json.dumps([data_version, params, buckets, code_version], sort_keys=True).encode()).hexdigest()[:8]

        final = registry.version_dir(settings, task, version)
        with atomic_dir(final) as tmp:
            tmp.mkdir(parents=True)
            salary.save(booster, schema, tmp)
            pred = salary.Predictor(tmp).predict(holdout, num_threads=0)
            # Baseline: median salary of the (filed category, prefecture) cell in training, else global median.
            cell = train_df.groupby(["category_filed", "prefecture"], dropna=False)["salary_label"].median()
            base = holdout.join(cell.rename("b"), on=["category_filed", "prefecture"])["b"].fillna(train_df["salary_label"].median())
            metrics = {
                "mae": salary.mae(holdout["salary_label"], pred["salary_p50"]),
                "baseline_mae": salary.mae(holdout["salary_label"], base),
                "n_train": int(len(train_df)), "n_holdout": int(len(holdout)),
                "best_iteration": int(booster.best_iteration or booster.current_iteration()),
            }
            meta = {
                "task": task, "version": version, "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                "logical_date": ctx.ds, "window_days": window_days, "holdout_from": cutoff.isoformat(),
                "features": schema.columns, "params": params, "metrics": metrics,
                "data_version": data_version, "feature_partitions": versions, "code_version": code_version,
                "run_id": ctx.run_id,
            }
            (tmp / registry.METADATA).write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")

        promoted, reason = _gate(ctx, task, version, holdout, metrics["mae"], tolerance)
        if promoted:
            registry.set_champion(settings, task, version, reason)
        log.info("%s model %s: %s", task, version, reason)
        _write_metrics(settings, task, version, metrics, promoted, reason)
        res.rows = len(train_df)
        res.paths["model"] = str(final)
        res.ids.update(model_version=version, promoted=promoted)
        res.metrics.update(mae=round(metrics["mae"], 1), baseline_mae=round(metrics["baseline_mae"], 1))
        res.metrics["reason"] = reason
    return res


def _gate(ctx: RunContext, task: str, version: str, holdout: pd.DataFrame, new_mae: float, tolerance: float) -> tuple[bool, str]:
    """Promote unless the champion does better on this same holdout by more than the tolerance."""
    from jobcast.models import salary

    champ = registry.champion(ctx.settings, task)
    if champ is None:
        return True, "promoted: no champion yet"
    if champ["version"] == version:
        return True, "promoted: same version as the champion (identical data, params and code)"
    try:
        champ_pred = salary.Predictor(registry.version_dir(ctx.settings, task, champ["version"]))
        champ_pred.schema.check(list(holdout.columns), None, f"champion {champ['version']}")
        champ_mae = salary.mae(holdout["salary_label"], champ_pred.predict(holdout, num_threads=0)["salary_p50"])
    except ModelError as exc:
        return True, f"promoted: champion {champ['version']} cannot score these features ({exc})"
    if new_mae <= champ_mae * (1 + tolerance):
        return True, f"promoted: holdout MAE {new_mae:,.0f} vs champion {champ['version']} {champ_mae:,.0f} (tolerance {tolerance:.0%})"
    return False, (f"kept champion {champ['version']}: new model's holdout MAE {new_mae:,.0f} is worse than the champion's "
                   f"{champ_mae:,.0f} by more than {tolerance:.0%}")


def _write_metrics(settings, task: str, version: str, metrics: dict, promoted: bool, reason: str) -> None:
    out = settings.root / "metrics" / f"train_{task}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"version": version, "promoted": promoted, **metrics}, indent=2), encoding="utf-8")
