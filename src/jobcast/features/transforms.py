"""Pure Spark transforms from raw snapshots to posting features. No I/O here: tests call them directly."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobcast.features.text import TERMS, TextSpec, add_text_terms

FEATURES_VERSION = 4  # bump when a feature's columns or meaning change: older partitions are then rebuilt
EVENT_WINDOWS = (7, 28)  # days before the logical date
EVENT_NUMERIC = (
    *(f"{kind}_{w}d" for w in EVENT_WINDOWS for kind in ("views", "applies")),
    "job_cvr_28d", "company_cvr_28d", "category_cvr_28d",
)
DAY_START, DAY_END = "_jc_day_start", "_jc_day_end"  # a day's bounds (UTC), carried by its rows in a many-day build
TEXT_INPUTS = ("job_id", "title", "description", "company_id")  # what a posting's text terms are a function of


@dataclass(frozen=True)
class CleanRules:
    salary_min_plausible: float
    salary_max_plausible: float


def clean_postings(postings: DataFrame, rules: CleanRules) -> tuple[DataFrame, dict[str, DataFrame]]:
    """Documented handling of bad source rows. Returns the kept rows and, per rule, the rows it touched.

    - a null or blank title: the posting is dropped (we cannot describe it), counted as dropped_null_title;
    - a disclosed salary that is negative, reversed (min > max) or outside the plausible range: the posting is
      kept and scored, but its salary is treated as not disclosed (never a training label), counted as
      salary_implausible.
    """
    blank_title = F.col("title").isNull() | (F.length(F.trim(F.col("title"))) == 0)
    disclosed = F.col("salary_min").isNotNull() & F.col("salary_max").isNotNull()
    plausible = (
        (F.col("salary_min") >= rules.salary_min_plausible)
        & (F.col("salary_max") <= rules.salary_max_plausible)
        & (F.col("salary_min") <= F.col("salary_max"))
    )
    implausible = (F.col("salary_min").isNotNull() | F.col("salary_max").isNotNull()) & ~(disclosed & plausible)
    kept = postings.where(~blank_title).withColumn(
        "salary_label",
        F.when(disclosed & plausible, (F.col("salary_min") + F.col("salary_max")) / 2.0).cast("double"),
    )
    touched = {
        "dropped_null_title": postings.where(blank_title),
        "salary_implausible": postings.where(~blank_title & implausible),
    }
    return kept, touched


def events_for_day(events: DataFrame, logical_date: dt.date, day_start_utc: dt.datetime) -> DataFrame:
    """A day's events snapshot, cut to what its features may use: the events of the EVENT_WINDOWS days strictly
    before the logical date's start (the day's own events are labels: no leakage), tagged with the day."""
    start = F.lit(day_start_utc).cast("timestamp")
    return (events.where((F.col("occurred_at") < start)
                         & (F.col("occurred_at") >= start - F.expr(f"INTERVAL {max(EVENT_WINDOWS)} DAYS")))
            .select("job_id", "event_type", "occurred_at", F.lit(logical_date).cast("date").alias("logical_date"),
                    start.alias(DAY_START)))


def event_counts(events: DataFrame) -> DataFrame:
    """Views and applies per (logical_date, job_id) over the EVENT_WINDOWS days before each day, from
    events_for_day's rows (one day's or several days' together, each from its own snapshot)."""
    aggs = []
    for w in EVENT_WINDOWS:
        inside = F.col("occurred_at") >= F.col(DAY_START) - F.expr(f"INTERVAL {w} DAYS")
        for kind in ("view", "apply"):
            aggs.append(F.sum(F.when(inside & (F.col("event_type") == kind), 1).otherwise(0)).cast("double")
                        .alias(f"{kind}s_{w}d".replace("applys", "applies")))
    return events.groupBy("logical_date", "job_id").agg(*aggs)


def event_counts_by_day(day_events: DataFrame, postings: DataFrame) -> DataFrame:
    """event_counts for many days from each day's events read once: `day_events` are (job_id, event_type,
    event_day) with every event of the window's days exactly once (files shared by the days' snapshots:
    jobs/features.build), `postings` the (logical_date, job_id) rows to count for. Each posting's per-day
    counts are summed over the EVENT_WINDOWS days before each of its days by a range window ordered by day:
    a sort of (posting, day) rows, not a copy of every event for every day whose window it falls in."""
    from pyspark.sql import Window

    epoch = F.lit("1970-01-01").cast("date")
    per_day = day_events.groupBy("job_id", "event_day").agg(
        *(F.sum(F.when(F.col("event_type") == kind, 1).otherwise(0)).cast("double").alias(kind) for kind in ("view", "apply")))
    rows = (per_day.select("job_id", F.datediff("event_day", epoch).alias("_jc_dn"), "view", "apply",
                           F.lit(None).cast("date").alias("logical_date"))
            .unionByName(postings.select("job_id", F.datediff("logical_date", epoch).alias("_jc_dn"),
                                         F.lit(0.0).alias("view"), F.lit(0.0).alias("apply"), "logical_date")))
    out = []
    for w in EVENT_WINDOWS:
        before = Window.partitionBy("job_id").orderBy("_jc_dn").rangeBetween(-w, -1)
        for kind in ("view", "apply"):
            out.append(F.coalesce(F.sum(kind).over(before), F.lit(0.0)).alias(f"{kind}s_{w}d".replace("applys", "applies")))
    return rows.select("logical_date", "job_id", *out).where(F.col("logical_date").isNotNull())


def event_features(counts: DataFrame, postings: DataFrame, smoothing: float) -> DataFrame:
    """Per open posting and day: views and applies over the EVENT_WINDOWS days before the logical date (`counts`:
    event_counts or event_counts_by_day), and apply rates of the posting, its company and its filed category
    over 28 days, smoothed towards the day's overall rate with `smoothing` pseudo-views. `postings` carry their
    day (with_day)."""
    day = ["logical_date"]
    numbers = [c for c in EVENT_NUMERIC if "_cvr" not in c]
    posts = postings.select(*day, "job_id", "company_id", F.coalesce(F.col("category"), F.lit("")).alias("category_key"))
    base = posts.join(counts, [*day, "job_id"], "left").fillna(0.0, subset=numbers)
    overall = base.groupBy(*day).agg((F.sum("applies_28d") / F.greatest(F.sum("views_28d"), F.lit(1.0))).alias("rate"))
    m = float(smoothing)

    def rate(applies, views):
        return (applies + m * F.col("rate")) / (views + m)

    def smoothed(key: str, name: str) -> DataFrame:
        grouped = base.groupBy(*day, key).agg(F.sum("views_28d").alias("v"), F.sum("applies_28d").alias("a"))
        return grouped.join(F.broadcast(overall), day).select(*day, key, rate(F.col("a"), F.col("v")).alias(name))

    out = (base.join(F.broadcast(overall), day)
           .withColumn("job_cvr_28d", rate(F.col("applies_28d"), F.col("views_28d")))
           .join(smoothed("company_id", "company_cvr_28d"), [*day, "company_id"], "left")
           .join(smoothed("category_key", "category_cvr_28d"), [*day, "category_key"], "left"))
    return out.select(*day, "job_id", *EVENT_NUMERIC)


def with_day(postings: DataFrame, logical_date: dt.date, day_end_utc: dt.datetime) -> DataFrame:
    """A day's snapshot of postings with the day its features are for (logical_date) and that day's end."""
    return (postings.withColumn("logical_date", F.lit(logical_date).cast("date"))
            .withColumn(DAY_END, F.lit(day_end_utc).cast("timestamp")))


TEXT_KEY = "_jc_text_key"  # a many-day build's xxhash64 of a row's TEXT_INPUTS: tells a posting's texts apart


def text_terms(postings: DataFrame, text: TextSpec, *, known: DataFrame | None = None) -> DataFrame:
    """postings with TERMS, computed in the JVM (add_text_terms), the costly part of the features.

    `known`: (TEXT_INPUTS..., TERMS) of texts already featurised by the same code and TextSpec (the previous
    day's features with that day's snapshot, jobs/features.known_terms). A posting whose four inputs equal a
    known row's takes its terms from it; only new and edited postings are featurised (a daily run: most
    postings' text is the same as yesterday's). The terms are a function of those four inputs alone, so the
    result is the same as featurising every row (a test compares them)."""
    if known is None:
        return add_text_terms(postings, text)
    cols = list(TEXT_INPUTS)
    mark = "_jc_known"
    k = known.select(*(F.col(c).alias(f"{mark}_{c}") for c in cols), F.col(TERMS).alias(mark))
    joined = postings.join(k, [F.col(c).eqNullSafe(F.col(f"{mark}_{c}")) for c in cols], "left").drop(*(f"{mark}_{c}" for c in cols))
    hit = joined.where(F.col(mark).isNotNull()).withColumnRenamed(mark, TERMS)
    return hit.unionByName(add_text_terms(joined.where(F.col(mark).isNull()).drop(mark), text))


def distinct_text_terms(keyed: DataFrame, text: TextSpec, *, known: DataFrame | None = None,
                        partitions: int | None = None) -> DataFrame:
    """(job_id, TEXT_KEY, TERMS) once per distinct text of a many-day build's rows (`keyed`: with TEXT_KEY): a
    posting open 25 days of a 28-day window is featurised once, not 25 times.

    Each text is taken from the first day that has it, picked by a broadcast semi-join on (job_id, TEXT_KEY,
    day): only the distinct texts are shuffled (spread over `partitions` tasks for the text work), not every
    day's copy of every description (at 1M open postings a 28-day build shuffled and spilled more than 47 GB
    that way). A posting's texts are told apart by a 64-bit hash of its four inputs: two different texts of
    one posting in one window share a key with a probability of about 2^-64."""
    cols = list(TEXT_INPUTS)
    first = keyed.groupBy("job_id", TEXT_KEY).agg(F.min("logical_date").alias("logical_date"))
    src = keyed.join(F.broadcast(first), ["job_id", TEXT_KEY, "logical_date"], "left_semi").select(*cols, TEXT_KEY)
    if partitions:
        src = src.repartition(partitions, "job_id", TEXT_KEY)
    src = src.dropDuplicates(["job_id", TEXT_KEY])  # a source with a posting twice in a day (the raw gate fails it)
    return text_terms(src, text, known=known).select("job_id", TEXT_KEY, TERMS)


FEATURE_COLUMNS = ("job_id", "logical_date", "company_id", "prefecture", "employment_type", "category_filed",
                   "posting_age_days", "title_len", "desc_len", TERMS, "salary_offered", "posted_at", "salary_label")


def _feature_values(with_terms: bool) -> list:
    """posting_features' columns (FEATURE_COLUMNS) from a snapshot's rows; TERMS only `with_terms`."""
    cols = [
        F.col("job_id").cast("long").alias("job_id"),
        F.col("logical_date"),
        F.col("company_id").cast("long").alias("company_id"),
        F.col("prefecture"),
        F.col("employment_type"),
        F.col("category").alias("category_filed"),
        ((F.col(DAY_END).cast("double") - F.col("posted_at").cast("double")) / 86400.0).alias("posting_age_days"),
        F.length("title").cast("double").alias("title_len"),
        F.coalesce(F.length("description"), F.lit(0)).cast("double").alias("desc_len"),
        F.col(TERMS),
        F.col("salary_label").alias("salary_offered"),  # visible on the posting: a feature for cvr
        F.col("posted_at"),
        F.col("salary_label"),
    ]
    return cols if with_terms else [c for c, name in zip(cols, FEATURE_COLUMNS) if name != TERMS]


def posting_features(postings: DataFrame, text: TextSpec, events: DataFrame | None = None, *,
                     dedupe_text: bool = False, known_terms: DataFrame | None = None,
                     partitions: int | None = None) -> DataFrame:
    """One row per open posting and day: categorical, numeric, text-term and (given events) event features, plus
    labels. `postings` carry their day (with_day); several days' postings give every day's rows in one frame.
    Everything runs in the JVM (Spark SQL), the text too (jobcast.features.text).

    `dedupe_text` (several days' snapshots of mostly the same postings): each distinct text is featurised once
    (distinct_text_terms), and the rows are built narrow (no title, description or terms) and joined with
    their events first, then with the terms, last: the only wide rows a shuffle carries are one per distinct
    text, hash-partitioned by (job_id, TEXT_KEY) into `partitions` tasks on both sides of the final join."""
    keys = ["logical_date", "job_id"]
    if not dedupe_text:
        feats = text_terms(postings, text, known=known_terms).select(*_feature_values(with_terms=True))
        if events is None:
            return feats
        return feats.join(events, keys, "left").select(*feats.columns, *(c for c in events.columns if c not in keys))
    keyed = postings.withColumn(TEXT_KEY, F.xxhash64(*TEXT_INPUTS))
    terms = distinct_text_terms(keyed, text, known=known_terms, partitions=partitions)
    rows = keyed.select(*_feature_values(with_terms=False), TEXT_KEY)
    extra = [] if events is None else [c for c in events.columns if c not in keys]
    if events is not None:
        rows = rows.join(events, keys, "left")
    if partitions:
        rows, terms = rows.repartition(partitions, "job_id", TEXT_KEY), terms.repartition(partitions, "job_id", TEXT_KEY)
    return rows.join(terms, ["job_id", TEXT_KEY], "inner").select(*FEATURE_COLUMNS, *extra)
