"""score: Spark bulk scoring of every open posting with the champion (or a pinned) model.

mapInPandas keeps the model in a per-process cache, so each Python worker loads it once, not per batch.
Runs in-process or under spark-submit: `spark-submit jobs/score.py --task salary --date D`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

from jobcast.context import RunContext, StepResult, timed_step
from jobcast.errors import InputDataError
from jobcast.models import registry
from jobcast.models.task_models import OUTPUT_SCHEMA, Predictor, check_task
from jobcast.storage import atomic_dir, dir_hash, parquet_rows, partition, read_manifest, tidy_spark_output, write_manifest

log = logging.getLogger(__name__)

_PREDICTORS: dict[tuple[str, str], Predictor] = {}  # per Python worker process: (task, model dir) -> Predictor


def _predictor(task: str, model_dir: str) -> Predictor:
    key = (task, model_dir)
    pred = _PREDICTORS.get(key)
    if pred is None:
        pred = _PREDICTORS[key] = Predictor.load(task, Path(model_dir))
    return pred


def score_batches(task: str, model_dir: str):
    """The mapInPandas function: one model per worker, one thread per Spark task (Spark already parallelises)."""
    def fn(batches: Iterator) -> Iterator:
        model = _predictor(task, model_dir)
        for pdf in batches:
            yield model.predict(pdf, num_threads=1)
    return fn


def run(ctx: RunContext, *, task: str = "salary", model_version: str | None = None) -> StepResult:
    check_task(task)
    settings = ctx.settings
    feats = partition(settings.data_dir, "features", date=ctx.ds)
    if not feats.is_dir():
        raise InputDataError(f"{feats}: no features for {ctx.ds}; run `jobcast features --date {ctx.ds}` first")
    model_dir = registry.champion_dir(settings, task, model_version)
    meta = registry.read_metadata(model_dir)
    feat_manifest = read_manifest(feats)

    with timed_step("score", ctx, task) as res:
        model = _predictor(task, str(model_dir.resolve()))  # fail here, in the driver, with a clear message
        schema = model.schema
        spark = ctx.spark()
        df = spark.read.parquet(str(feats))
        schema.check(df.columns, feat_manifest.get("text"), f"model {meta['version']} on {feats}")
        # Absolute path: cluster workers must see the same models dir (shared volume) or use spark-submit --files.
        scored = df.select("job_id", *schema.columns).mapInPandas(score_batches(task, str(model_dir.resolve())), OUTPUT_SCHEMA[task])
        final = partition(settings.data_dir, "predictions", task, date=ctx.ds)
        with atomic_dir(final) as tmp:
            scored.write.parquet(str(tmp))
            tidy_spark_output(tmp)
            n = parquet_rows(tmp)
            write_manifest(tmp, {
                "task": task, "logical_date": ctx.ds, "rows": n, "model_version": meta["version"],
                "features_version": dir_hash(feats), "expected_rows": feat_manifest.get("rows"),
                **({"labels": model.labels} if model.labels else {}),
            })
        res.rows = n
        res.paths["predictions"] = str(final)
        res.ids.update(model_version=meta["version"], data_version=dir_hash(final)[:12])
    return res


if __name__ == "__main__":  # spark-submit entry point
    import sys

    from jobcast.cli import main

    sys.exit(main(["score", *sys.argv[1:]]))
