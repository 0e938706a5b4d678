"""The source contract: which app tables/columns jobcast reads, their Arrow types, and the logical day's bounds."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")

# Table -> (query file in sql/queries, column types). A board points jobcast at tables (or views) of this shape.
SOURCES: dict[str, tuple[str, dict[str, pa.DataType]]] = {
    "job_postings": ("extract_job_postings.sql", {
        "job_id": pa.int64(), "company_id": pa.int64(), "title": pa.string(), "description": pa.string(),
        "prefecture": pa.string(), "employment_type": pa.string(), "category": pa.string(),
        "salary_min": pa.int64(), "salary_max": pa.int64(), "posted_at": TS, "closed_at": TS,
    }),
    "events": ("extract_events.sql", {
        "event_id": pa.int64(), "job_id": pa.int64(), "session_id": pa.int64(), "event_type": pa.string(),
        "occurred_at": TS,
    }),
}


ARROW_TYPES = {"integer": pa.int64(), "text": pa.string(), "timestamptz": TS}


def all_sources(root) -> dict[str, tuple[str, dict[str, pa.DataType], bool]]:
    """Every table extract snapshots: name -> (query text, column types, optional). The contract's own
    (SOURCES, required) and those the declared tasks read (jobcast.tasks.base.Source, optional)."""
    from jobcast import tasks

    out = {name: ((root / "sql" / "queries" / query).read_text(encoding="utf-8"), types, False)
           for name, (query, types) in SOURCES.items()}
    for task in tasks.all_tasks():
        for name, source in task.sources.items():
            out[name] = (source.query, {c: ARROW_TYPES[k] for c, k in source.types.items()}, True)
    return out


def day_bounds(day: dt.date, timezone: str) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a logical date in the board's timezone, as aware datetimes."""
    tz = ZoneInfo(timezone)
    start = dt.datetime.combine(day, dt.time(), tz)
    return start, dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tz)


def event_file(day: dt.date | str) -> str:
    """The file of one day's events (in run.timezone) in an events snapshot (jobs/extract.py)."""
    return f"events-{day if isinstance(day, str) else day.isoformat()}.parquet"
