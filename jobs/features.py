"""features: a Spark job from the raw snapshot to one feature row per open posting (data/features/dt=D).

Event aggregates use only the snapshot's events before the logical date (the day's own events are labels).

Runs in-process (CLI, Airflow, DVC) or under spark-submit: `spark-submit jobs/features.py --date D`.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from pathlib import Path

from jobcast.context import RunContext, StepResult, timed_step
from jobcast.errors import InputDataError
from jobcast.sources import day_bounds
from jobcast.spark import parallelism
from jobcast.storage import (atomic_dir, check_parquet, dir_hash, parquet_rows, partition, read_manifest, scratch_path,
                             tidy_spark_output, write_manifest)

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
    settings = ctx.settings
    kept_manifest = None if force else reusable(settings, ctx.ds)
    if kept_manifest is not None:
        with timed_step("features", ctx) as res:
            log.info("features of %s are current (same snapshot, code and params) and intact: reused; --force rebuilds",
                     ctx.ds)
            res.rows = int(kept_manifest["rows"])
            res.paths["features"] = str(partition(settings.data_dir, "features", date=ctx.ds))
            res.ids["data_version"] = kept_manifest["content_version"][:12]
            res.metrics.update({k: kept_manifest.get(k, 0) for k in RULES}, reused=True)
        return res
    with timed_step("features", ctx) as res:
        manifest = build(ctx, [ctx.logical_date])[ctx.ds]
        res.rows = manifest["rows"]
        res.paths["features"] = str(partition(settings.data_dir, "features", date=ctx.ds))
        res.ids["data_version"] = manifest["content_version"][:12]
        res.metrics.update({k: manifest[k] for k in RULES})
    return res


RULES = ("dropped_null_title", "salary_implausible")  # clean_postings' documented handling, counted per day


def build(ctx: RunContext, days: list[dt.date]) -> dict[str, dict]:
    """The features of `days`, each from its own raw snapshot, in one Spark write (and one small job that counts
    the cleaning rules per day); returns each day's manifest.

    One write for many days (`jobcast window`) rather than one per day: a posting open on 25 days of a 28-day
    window has its text featurised once (transforms.distinct_text_terms), the event aggregates of all the days are one
    aggregation, and Spark's fixed costs are paid once. Every day is written to data/features/dt=D on its own,
    atomically, with the same content and manifest a one-day build gives (a test compares them). The text of
    postings unchanged since the day before the first day is not featurised again (known_terms)."""
    from functools import reduce

    from pyspark.sql import functions as F

    from jobcast.features.transforms import (FEATURES_VERSION, CleanRules, clean_postings, event_counts,
                                             event_counts_by_day, event_features, events_for_day, posting_features,
                                             with_day)

    settings = ctx.settings
    text = text_spec(settings)
    rules = CleanRules(settings.param_number("clean.salary_min_plausible", float), settings.param_number("clean.salary_max_plausible", float))
    smoothing = settings.param_number("features.rate_smoothing_views", float)
    tz = settings.param("run.timezone")
    spark = ctx.spark()
    days = sorted(set(days))
    raws, snapshots, day_events = {}, [], []
    for day in days:
        ds = day.isoformat()
        raw = partition(settings.data_dir, "raw", "job_postings", date=ds)
        raw_events = partition(settings.data_dir, "raw", "events", date=ds)
        for path in (raw, raw_events):
            if not path.is_dir():
                raise InputDataError(f"{path}: no raw snapshot for {ds}; run `jobcast extract --date {ds}` first")
            check_parquet(path, f"`jobcast extract --date {ds} --refresh` (re-takes the snapshot from today's tables)")
        raws[ds] = (raw, raw_events)
        _, day_end = day_bounds(day, tz)
        snapshots.append(with_day(spark.read.parquet(str(raw)), day, day_end))
    raw_rows = {ds: read_manifest(raw).get("rows") for ds, (raw, _) in raws.items()}
    postings = reduce(lambda a, b: a.unionByName(b), snapshots)
    total = sum(int(n or 0) for n in raw_rows.values())
    if len(days) == 1:
        # A day's snapshot is one Parquet file, so one Spark task would featurise it on one core: spread the day
        # (the text is most of the work) over every core, or 50k postings a task on a big board.
        kept, _ = clean_postings(postings.repartition(max(parallelism(spark), total // 50_000 + 1)), rules)
        tasks = None
    else:
        # Only the distinct texts and the narrow rows are shuffled (transforms.posting_features), in tasks of
        # ROWS_PER_TASK rows.
        kept, _ = clean_postings(postings, rules)
        tasks = max(parallelism(spark), total // ROWS_PER_TASK + 1)
    # The event aggregates and the rule counts read a few narrow columns of the snapshots, not the repartitioned
    # rows (descriptions included), so Spark prunes the rest at the Parquet reader.
    narrow, touched = clean_postings(postings, rules)
    counts = _rule_counts(touched, raws)
    shared = shared_event_files(raws) if len(days) > 1 else None
    if shared is None:  # each day's events from its own snapshot
        for day in days:
            day_start, _ = day_bounds(day, tz)
            day_events.append(events_for_day(spark.read.parquet(str(raws[day.isoformat()][1])), day, day_start))
        per_job = event_counts(reduce(lambda a, b: a.unionByName(b), day_events))
    else:  # the days' snapshots share their files: each day's events read once
        log.info("features: the %d days' events snapshots share their files; %d day files read once", len(days), len(shared))
        day_events = [spark.read.parquet(str(f)).select("job_id", "event_type", F.lit(e).cast("date").alias("event_day"))
                      for e, f in shared.items()]
        per_job = event_counts_by_day(reduce(lambda a, b: a.unionByName(b), day_events), narrow.select("logical_date", "job_id"))
    events = event_features(per_job, narrow, smoothing)
    known = known_terms(ctx, days[0] - dt.timedelta(days=1), text)
    features = posting_features(kept, text, events, dedupe_text=len(days) > 1, known_terms=known, partitions=tasks)
    manifests = {}
    staging = scratch_path(settings.data_dir / "features", "build")
    try:
        if len(days) == 1:
            features.write.parquet(str(staging / f"{DAY_DIR}={days[0].isoformat()}"))
        else:  # one directory per day; the day stays a column of its files, as in a one-day build
            features.withColumn(DAY_DIR, F.col("logical_date").cast("string")).write.partitionBy(DAY_DIR).parquet(str(staging))
        for ds, (raw, raw_events) in raws.items():
            final = partition(settings.data_dir, "features", date=ds)
            with atomic_dir(final) as tmp:
                written = staging / f"{DAY_DIR}={ds}"
                if written.is_dir():
                    written.rename(tmp)
                else:  # no open posting kept that day (every title blank): an empty partition of the same schema
                    features.where(F.lit(False)).write.parquet(str(tmp))
                tidy_spark_output(tmp)
                manifests[ds] = {
                    "logical_date": ds, "rows": parquet_rows(tmp), "raw_rows": raw_rows[ds], "text": text.to_dict(),
                    "features_version": FEATURES_VERSION,
                    "raw_version": dir_hash(raw), "events_version": dir_hash(raw_events), **counts[ds],
                    "snapshot_mode": read_manifest(raw).get("mode", "unknown"),  # jobs/extract.py: point_in_time or not
                    "recipe": recipe(settings, ds), "content_version": dir_hash(tmp),
                }
                write_manifest(tmp, manifests[ds])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifests


def shared_event_files(raws: dict) -> dict[dt.date, Path] | None:
    """{event day: file} when the days' events snapshots hold one file per day (jobs/extract.py) and each event
    day's features count (the EVENT_WINDOWS days before it) is the same file in every snapshot that counts it
    (hard links: one inode), so reading each file once gives every day exactly its own snapshot's events. With
    extract.events_settle_days 0 or 1 that holds for a window of daily snapshots. None when a snapshot
    predates files per day, or two snapshots count different files for a day (one was re-taken: --refresh; a
    longer settle): then each day reads its own snapshot."""
    from jobcast.features.transforms import EVENT_WINDOWS
    from jobcast.sources import event_file

    found: dict[dt.date, tuple[tuple[int, int], Path]] = {}
    for ds, (_raw, raw_events) in raws.items():
        held = read_manifest(raw_events).get("days")
        if not held:
            return None
        day = dt.date.fromisoformat(ds)
        for e in held:
            e_day = dt.date.fromisoformat(e)
            if not day - dt.timedelta(days=max(EVENT_WINDOWS)) <= e_day < day:  # not counted by this day's features
                continue
            f = raw_events / event_file(e)
            if not f.is_file():
                raise InputDataError(f"{f}: missing, though the snapshot's manifest lists day {e}; re-take the snapshot: "
                                     f"`jobcast extract --date {ds} --refresh`")
            st = f.stat()
            ident = (st.st_dev, st.st_ino)
            if e_day in found and found[e_day][0] != ident:
                return None
            found.setdefault(e_day, (ident, f))
    return {e: f for e, (_, f) in sorted(found.items())}


def known_terms(ctx: RunContext, day: dt.date, text):
    """The text terms of `day`'s features with the texts they were computed from (its raw snapshot), for
    transforms.text_terms to reuse: only when they were built by this feature code with this TextSpec, from the
    snapshot as it is now, and their files are intact. Else None: every text is featurised."""
    from jobcast.features.text import TERMS
    from jobcast.features.transforms import FEATURES_VERSION, TEXT_INPUTS

    settings = ctx.settings
    feats = partition(settings.data_dir, "features", date=day.isoformat())
    raw = partition(settings.data_dir, "raw", "job_postings", date=day.isoformat())
    m = read_manifest(feats) if feats.is_dir() and raw.is_dir() else {}
    if not (m.get("features_version") == FEATURES_VERSION and m.get("text") == text.to_dict()
            and m.get("raw_version") == dir_hash(raw) and m.get("content_version") == dir_hash(feats)):
        return None
    log.info("features: text terms of the postings unchanged since %s are reused from its features", day)
    spark = ctx.spark()
    return (spark.read.parquet(str(raw)).select(*TEXT_INPUTS)
            .join(spark.read.parquet(str(feats)).select("job_id", TERMS), "job_id"))


# A many-day build's rows per task in its last join and its write: a task sorts its rows by day to write them
# (about 1.2 GB at ~600 terms a row, spilled past its share of the heap) and writes one file per day.
ROWS_PER_TASK = 500_000
DAY_DIR = "_jc_dt"  # the staging directories of a many-day build (the files keep logical_date as a column)


def _rule_counts(touched: dict, raws: dict) -> dict[str, dict[str, int]]:
    """Per day, how many postings each cleaning rule touched (one Spark job for every day and rule), with a
    warning naming an example, as docs/source-contract.md documents."""
    from functools import reduce

    from pyspark.sql import functions as F

    tagged = reduce(lambda a, b: a.unionByName(b), [df.select("logical_date", "job_id", F.lit(name).alias("rule"))
                                                    for name, df in touched.items()])
    found = tagged.groupBy("logical_date", "rule").agg(F.count("*").alias("n"), F.min("job_id").alias("example")).collect()
    counts = {ds: dict.fromkeys(touched, 0) for ds in raws}
    for row in sorted(found, key=lambda r: (r["logical_date"], r["rule"])):
        ds = row["logical_date"].isoformat()
        counts[ds][row["rule"]] = int(row["n"])
        log.warning("%s: %d postings %s (e.g. job_id=%s); handled as documented in docs/source-contract.md",
                    raws[ds][0], row["n"], row["rule"].replace("_", " "), row["example"])
    return counts


if __name__ == "__main__":  # spark-submit entry point: `spark-submit jobs/features.py --date D ...`
    import sys

    from jobcast.entry import step_main

    sys.exit(step_main(run, "features", sys.argv[1:]))
