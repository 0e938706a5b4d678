"""Pure Spark transforms from raw snapshots to posting features. No I/O here: tests call them directly."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

# The feature columns a model may use, by kind. Scoring checks a model's schema against these.
CATEGORICAL = ("prefecture", "employment_type", "category_filed")
NUMERIC = ("posting_age_days", "title_len", "desc_len")
TEXT = "text_hash"
LABELS = ("salary_label",)


@dataclass(frozen=True)
class CleanRules:
    salary_min_plausible: float
    salary_max_plausible: float


def _hash_udf(buckets: int):
    from pyspark.sql.functions import pandas_udf

    @pandas_udf(T.ArrayType(T.IntegerType()))
    def text_hash(title: pd.Series, description: pd.Series) -> pd.Series:
        from jobcast.features.text import char_ngram_hashes

        return pd.Series([
            sorted(set(char_ngram_hashes(t, buckets, "t:")) | set(char_ngram_hashes(d, buckets, "d:")))
            for t, d in zip(title, description)
        ])

    return text_hash


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


def posting_features(postings: DataFrame, logical_date: dt.date, day_end_utc: dt.datetime, buckets: int) -> DataFrame:
    """One row per open posting: categorical, numeric and hashed-text features, plus the salary label."""
    text_hash = _hash_udf(buckets)
    return postings.select(
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
        text_hash(F.col("title"), F.coalesce(F.col("description"), F.lit(""))).alias(TEXT),
        F.col("posted_at"),
        F.col("salary_label"),
    )
