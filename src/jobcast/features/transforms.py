"""Pure Spark transforms from raw snapshots to posting features. No I/O here: tests call them directly."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobcast.features.text import TERMS, TextSpec, add_text_terms

FEATURES_VERSION = 3  # bump when a feature's columns or meaning change: older partitions are then rebuilt
EVENT_WINDOWS = (7, 28)  # days before the logical date
EVENT_NUMERIC = (
    *(f"{kind}_{w}d" for w in EVENT_WINDOWS for kind in ("views", "applies")),
    "job_cvr_28d", "company_cvr_28d", "category_cvr_28d",
)


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


def event_features(events: DataFrame, postings: DataFrame, day_start_utc: dt.datetime, smoothing: float) -> DataFrame:
    """Per open posting: views and applies over the EVENT_WINDOWS days before the logical date, and apply rates
    of the posting, its company and its filed category over 28 days, smoothed towards the overall rate with
    `smoothing` pseudo-views. Only events strictly before the logical date's start count: no leakage."""
    start = F.lit(day_start_utc).cast("timestamp")
    longest = max(EVENT_WINDOWS)
    ev = events.where((F.col("occurred_at") < start)
                      & (F.col("occurred_at") >= start - F.expr(f"INTERVAL {longest} DAYS")))
    aggs = []
    for w in EVENT_WINDOWS:
        inside = F.col("occurred_at") >= start - F.expr(f"INTERVAL {w} DAYS")
        for kind in ("view", "apply"):
            aggs.append(F.sum(F.when(inside & (F.col("event_type") == kind), 1).otherwise(0)).cast("double")
                        .alias(f"{kind}s_{w}d".replace("applys", "applies")))
    per_job = ev.groupBy("job_id").agg(*aggs)
    counts = [c for c in EVENT_NUMERIC if "_cvr" not in c]
    posts = postings.select("job_id", "company_id", F.coalesce(F.col("category"), F.lit("")).alias("category_key"))
    base = posts.join(per_job, "job_id", "left").fillna(0.0, subset=counts)
    overall = base.agg((F.sum("applies_28d") / F.greatest(F.sum("views_28d"), F.lit(1.0))).alias("rate"))
    m = float(smoothing)

    def rate(applies, views):
        return (applies + m * F.col("rate")) / (views + m)

    def smoothed(key: str, name: str) -> DataFrame:
        grouped = base.groupBy(key).agg(F.sum("views_28d").alias("v"), F.sum("applies_28d").alias("a"))
        return grouped.crossJoin(overall).select(key, rate(F.col("a"), F.col("v")).alias(name))

    out = (base.crossJoin(overall)
           .withColumn("job_cvr_28d", rate(F.col("applies_28d"), F.col("views_28d")))
           .join(smoothed("company_id", "company_cvr_28d"), "company_id", "left")
           .join(smoothed("category_key", "category_cvr_28d"), "category_key", "left"))
    return out.select("job_id", *EVENT_NUMERIC)


def posting_features(postings: DataFrame, logical_date: dt.date, day_end_utc: dt.datetime, text: TextSpec,
                     events: DataFrame | None = None) -> DataFrame:
    """One row per open posting: categorical, numeric, text-term and (given events) event features, plus labels.
    Everything runs in the JVM (Spark SQL), the text too (jobcast.features.text)."""
    feats = add_text_terms(postings, text).select(
        F.col("job_id").cast("long"),
        F.lit(logical_date).cast("date").alias("logical_date"),
        F.col("company_id").cast("long"),
        F.col("prefecture"),
        F.col("employment_type"),
        F.col("category").alias("category_filed"),
        ((F.lit(day_end_utc).cast("timestamp").cast("double") - F.col("posted_at").cast("double")) / 86400.0)
        .alias("posting_age_days"),
        F.length("title").cast("double").alias("title_len"),
        F.coalesce(F.length("description"), F.lit(0)).cast("double").alias("desc_len"),
        F.col(TERMS),
        F.col("salary_label").alias("salary_offered"),  # visible on the posting: a feature for cvr
        F.col("posted_at"),
        F.col("salary_label"),
    )
    return feats if events is None else feats.join(events, "job_id", "left")
