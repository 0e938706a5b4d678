"""score: Spark bulk scoring of every open posting with the champion (or a pinned) model.

mapInPandas keeps the model in a per-process cache, so each Python worker loads it once, not per batch.
Runs in-process or under spark-submit: `spark-submit jobs/score.py --task salary --date D`.

Incremental: each prediction row carries FEATURE_HASH, a hash of the feature values the model reads. A
prediction is a pure function of (model version, scoring code, feature row), so when an earlier predictions
partition was written by the same model version and scoring code, the postings whose hash is unchanged take
its values and only new or changed postings are scored. The partition written is still complete (every open
posting), so validation and publish see one whole batch either way. `--full` scores everything.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Iterator

from jobcast.context import RunContext, StepResult, timed_step
from jobcast.errors import InputDataError
from jobcast.models import registry
from jobcast.models.task_models import Predictor
from jobcast.storage import atomic_dir, check_parquet, dir_hash, parquet_rows, partition, read_manifest, tidy_spark_output, write_manifest
from jobcast.tasks import Task, get as get_task

log = logging.getLogger(__name__)

FEATURE_HASH = "feature_hash"  # xxhash64 of the model's feature columns (Spark's, seed 42: stable across runs)
_PREDICTORS: dict[tuple[str, str], Predictor] = {}  # per Python worker process: (task, model dir) -> Predictor


def _predictor(task: Task, model_dir: str) -> Predictor:
    key = (task.name, model_dir)
    pred = _PREDICTORS.get(key)
    if pred is None:
        pred = _PREDICTORS[key] = Predictor.load(task, Path(model_dir))
    return pred


def score_batches(task: Task, model_dir: str, reasons: bool = True):
    """The mapInPandas function: one model per worker, one thread per Spark task (Spark already parallelises).
    The feature hash passes through. The task's declaration travels in the closure (by value when it is not
    jobcast's own: jobcast.tasks.register), so a worker needs no registry of its own."""
    def fn(batches: Iterator) -> Iterator:
        model = _predictor(task, model_dir)
        model.with_reasons = reasons
        for pdf in batches:
            yield model.predict(pdf, num_threads=1).assign(**{FEATURE_HASH: pdf[FEATURE_HASH].to_numpy()})
    return fn


def scoring_code(task: Task) -> str:
    """A digest of the code that turns a feature row into a prediction and its reasons (the shared model code
    and the task's declaration): carried values must come from it."""
    import inspect

    from jobcast.models import matrix, reasons, task_models, text_model

    files = [Path(m.__file__) for m in (matrix, reasons, task_models, text_model)] + [Path(inspect.getfile(type(task)))]
    return hashlib.md5(b"".join(f.read_bytes() for f in files)).hexdigest()


def previous_partition(settings, task: str, before: str, model_version: str, code: str) -> Path | None:
    """The newest predictions partition dated before `before` written by this model version and scoring code."""
    base = settings.data_dir / "predictions" / task
    for d in sorted(base.glob("dt=*"), reverse=True):
        if d.name[3:] >= before or not (d / "_manifest.json").is_file():
            continue
        m = read_manifest(d)
        if m.get("model_version") == model_version and m.get("scoring_code") == code and m.get("feature_hash"):
            return d
    return None


def run(ctx: RunContext, *, task: str = "salary", model_version: str | None = None, full: bool = False) -> StepResult:
    declared = get_task(task)
    task = declared.name
    settings = ctx.settings
    feats = partition(settings.data_dir, "features", date=ctx.ds)
    if not feats.is_dir():
        raise InputDataError(f"{feats}: no features for {ctx.ds}; run `jobcast features --date {ctx.ds}` first")
    check_parquet(feats, f"`jobcast features --date {ctx.ds} --force`")
    model_dir = registry.champion_dir(settings, task, model_version)
    meta = registry.read_metadata(model_dir)
    feat_manifest = read_manifest(feats)

    with timed_step("score", ctx, task) as res:
        model = _predictor(declared, str(model_dir.resolve()))  # fail here, in the driver, with a clear message
        schema = model.schema
        spark = ctx.spark()
        df = spark.read.parquet(str(feats))
        schema.check(df.columns, feat_manifest.get("text"), f"model {meta['version']} on {feats}")
        from pyspark.sql import functions as F

        reasons = bool(settings.param("score.reasons"))
        code = scoring_code(declared) + ("" if reasons else "-no-reasons")
        feature_hash = F.xxhash64(*schema.columns)
        rows = df.select("job_id", *schema.columns).withColumn(FEATURE_HASH, feature_hash)
        out_schema = f"{declared.spark_schema}, {FEATURE_HASH} bigint"
        outputs = list(declared.columns[1:])  # after job_id: the outputs and the reasons
        prev = None if full else previous_partition(settings, task, ctx.ds, meta["version"], code)
        if prev is not None:
            # One scan of the features: each row's hash against the previous partition's (job_id, hash), two
            # narrow columns broadcast (16 bytes a posting), leaves the new and changed rows to score.
            before = spark.read.parquet(str(prev)).select("job_id", FEATURE_HASH)
            rows = rows.join(F.broadcast(before), ["job_id", FEATURE_HASH], "left_anti")
        # Absolute path: cluster workers must see the same models dir (shared volume) or use spark-submit --files.
        scored = rows.mapInPandas(score_batches(declared, str(model_dir.resolve()), reasons), out_schema)
        kept = None
        if prev is not None:
            # Scored once and kept (a few percent of the postings on a normal day). The previous rows are carried
            # for the postings still open and not rescored, matched on job_id against two broadcasts: today's ids
            # (one narrow column) and the rescored ids. So the features are scanned whole once, not twice, and the
            # previous outputs (the reasons are most of their bytes) are read once and never shuffled.
            kept = scored.persist()
            carried = (spark.read.parquet(str(prev)).select("job_id", *outputs, FEATURE_HASH)
                       .join(F.broadcast(df.select("job_id")), "job_id", "left_semi")
                       .join(F.broadcast(kept.select("job_id")), "job_id", "left_anti"))
            scored = kept.unionByName(carried)
        final = partition(settings.data_dir, "predictions", task, date=ctx.ds)
        with atomic_dir(final) as tmp:
            try:
                n_rescored = kept.count() if kept is not None else None  # scores the changed rows, into the cache
                scored.write.parquet(str(tmp))
            finally:
                if kept is not None:
                    kept.unpersist()
            tidy_spark_output(tmp)
            n = parquet_rows(tmp)
            n_carried = n - n_rescored if n_rescored is not None else 0
            write_manifest(tmp, {
                "task": task, "logical_date": ctx.ds, "rows": n, "model_version": meta["version"],
                "features_version": dir_hash(feats), "expected_rows": feat_manifest.get("rows"),
                "scoring_code": code, "feature_hash": FEATURE_HASH,
                # What `jobcast reproduce` needs besides the inputs (publish copies it into the batch's lineage).
                "code_version": registry.code_version(settings.root), "params": settings.params,
                "carried": n_carried, "rescored": n - n_carried, "carried_from": prev.name[3:] if prev is not None else None,
                **declared.manifest_extras(model),
            })
        log.info("%s %s: %d predictions, %d rescored, %d carried from %s", task, ctx.ds, n, n - n_carried, n_carried,
                 prev or "none (full rescore)")
        res.rows = n
        res.metrics.update(rescored=n - n_carried, carried=n_carried)
        res.paths["predictions"] = str(final)
        res.ids.update(model_version=meta["version"], data_version=dir_hash(final)[:12])
    return res


if __name__ == "__main__":  # spark-submit entry point: `spark-submit jobs/score.py --date D ...`
    import sys

    from jobcast.entry import step_main

    sys.exit(step_main(run, "score", sys.argv[1:]))
