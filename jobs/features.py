"""features: a Spark job from the raw snapshot to one feature row per open posting (data/features/dt=D).

Event aggregates use only the snapshot's events before the logical date (the day's own events are labels).

Runs in-process (CLI, Airflow, DVC) or under spark-submit: `spark-submit jobs/features.py --date D`.
"""

from __future__ import annotations

import logging

from jobcast.context import RunContext, StepResult, timed_step
from jobcast.errors import InputDataError
from jobcast.sources import day_bounds
from jobcast.spark import parallelism
from jobcast.storage import atomic_dir, check_parquet, dir_hash, parquet_rows, partition, read_manifest, tidy_spark_output, write_manifest

log = logging.getLogger(__name__)


def text_spec(settings):
    """features.text of params.yaml, checked (a bad value names the key)."""
    from jobcast.errors import ConfigError
    from jobcast.features.text import TextSpec

    try:
        return TextSpec.from_params(settings.param("features.text"))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"params.yaml: {exc}") from exc


def recipe(settings, ds: str) -> str:
    """What a day's features are a function of: the snapshot (immutable, jobs/extract.py), the feature code and
    the params it reads. Same recipe, same features: a retry, a backfill or a window rebuild reuses them."""
    import hashlib
    import json

    from jobcast.features.transforms import FEATURES_VERSION

    parts = {name: partition(settings.data_dir, "raw", name, date=ds) for name in ("job_postings", "events")}
    return hashlib.sha256(json.dumps({
        "features_version": FEATURES_VERSION, "text": text_spec(settings).to_dict(), "clean": settings.param("clean"),
        "smoothing": settings.param("features.rate_smoothing_views"), "timezone": settings.param("run.timezone"),
        **{name: dir_hash(p) for name, p in parts.items()},
    }, sort_keys=True, default=str).encode()).hexdigest()


def reusable(settings, ds: str) -> dict | None:
    """The manifest of ds's features when they are current (same recipe) and intact (same content), else None."""
    from jobcast.features.transforms import FEATURES_VERSION

    final = partition(settings.data_dir, "features", date=ds)
    m = read_manifest(final) if final.is_dir() else {}
    if (m.get("features_version") == FEATURES_VERSION and m.get("recipe") == recipe(settings, ds)
            and m.get("content_version") == dir_hash(final)):
        return m
    return None


def run(ctx: RunContext, *, force: bool = False) -> StepResult:
    from jobcast.features.transforms import FEATURES_VERSION, CleanRules, clean_postings, event_features, posting_features

    settings = ctx.settings
    raw = partition(settings.data_dir, "raw", "job_postings", date=ctx.ds)
    raw_events = partition(settings.data_dir, "raw", "events", date=ctx.ds)
    for path in (raw, raw_events):
        if not path.is_dir():
            raise InputDataError(f"{path}: no raw snapshot for {ctx.ds}; run `jobcast extract --date {ctx.ds}` first")
        check_parquet(path, f"`jobcast extract --date {ctx.ds} --refresh` (re-takes the snapshot from today's tables)")
    text = text_spec(settings)
    rules = CleanRules(settings.param_number("clean.salary_min_plausible", float), settings.param_number("clean.salary_max_plausible", float))
    day_start, day_end = day_bounds(ctx.logical_date, settings.param("run.timezone"))
    smoothing = settings.param_number("features.rate_smoothing_views", float)

    kept_manifest = None if force else reusable(settings, ctx.ds)
    if kept_manifest is not None:
        with timed_step("features", ctx) as res:
            log.info("features of %s are current (same snapshot, code and params) and intact: reused; --force rebuilds",
                     ctx.ds)
            res.rows = int(kept_manifest["rows"])
            res.paths["features"] = str(partition(settings.data_dir, "features", date=ctx.ds))
            res.ids["data_version"] = kept_manifest["content_version"][:12]
            res.metrics.update({k: kept_manifest.get(k, 0) for k in ("dropped_null_title", "salary_implausible")}, reused=True)
        return res
    with timed_step("features", ctx) as res:
        spark = ctx.spark()
        # A day's snapshot is one Parquet file, so one Spark task would featurise it on one core: spread it (the
        # text is most of the work) over every core, or 50k postings a task on a big board.
        raw_rows = read_manifest(raw).get("rows")
        tasks = max(parallelism(spark), int(raw_rows or 0) // 50_000 + 1)
        postings = spark.read.parquet(str(raw)).repartition(tasks)
        kept, touched = clean_postings(postings, rules)
        counts = {name: df.count() for name, df in touched.items()}
        for name, n in counts.items():
            if n:
                example = touched[name].select("job_id").orderBy("job_id").first()[0]
                log.warning("%s: %d postings %s (e.g. job_id=%s); handled as documented in docs/source-contract.md",
                            raw, n, name.replace("_", " "), example)
        events = event_features(spark.read.parquet(str(raw_events)), kept, day_start, smoothing)
        features = posting_features(kept, ctx.logical_date, day_end, text, events)
        final = partition(settings.data_dir, "features", date=ctx.ds)
        with atomic_dir(final) as tmp:
            features.write.parquet(str(tmp))
            tidy_spark_output(tmp)
            n = parquet_rows(tmp)
            write_manifest(tmp, {
                "logical_date": ctx.ds, "rows": n, "raw_rows": raw_rows, "text": text.to_dict(),
                "features_version": FEATURES_VERSION,
                "raw_version": dir_hash(raw), "events_version": dir_hash(raw_events), **counts,
                "snapshot_mode": read_manifest(raw).get("mode", "unknown"),  # jobs/extract.py: point_in_time or not
                "recipe": recipe(settings, ctx.ds), "content_version": dir_hash(tmp),
            })
        res.rows = n
        res.paths["features"] = str(final)
        res.ids["data_version"] = dir_hash(final)[:12]
        res.metrics.update(counts)
    return res


if __name__ == "__main__":  # spark-submit entry point: `spark-submit jobs/features.py --date D ...`
    import sys

    from jobcast.entry import step_main

    sys.exit(step_main(run, "features", sys.argv[1:]))
