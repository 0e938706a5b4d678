"""extract: the logical date's snapshot of the source tables to Parquet.

raw/job_postings/dt=D: postings open at the end of D. raw/events/dt=D: events from features.event_window_days
before D to the end of D, one file per day of events (events-YYYY-MM-DD.parquet), so every date's features and
labels come from its own snapshot (a backfill of any date needs nothing from other dates' runs).

Events are facts that do not change once their day has settled, so a day's snapshot reads from the source
only its own day's events and those of the `extract.events_settle_days` days before it (events logged late)
when the day before has a snapshot of the same window: the older days' files are hard links to that
snapshot's (the same bytes, stored once; a copy where the filesystem has no hard links). A big board's
snapshot thus reads and stores 2 days of events, not features.event_window_days + 1. The price: an event
that reaches the source more than events_settle_days after its day is not seen (`--refresh` re-reads the
whole window). A first snapshot, a day whose previous day has none (a backfill out of order), and --refresh
read the whole window.

A snapshot is immutable once taken. The source tables are mutable (an employer edits a category on day 20),
so re-extracting day 5 on day 20 would leak day 20's values into day 5's features. An existing snapshot is
reused; only `refresh=True` (`--refresh`) takes it again, and its manifest keeps that history. The manifest
also says how faithful the snapshot is: `point_in_time` when taken within `extract.point_in_time_hours`
after the day ended, else `reconstructed` (taken later, from rows that may have been edited since); with
an `updated_at` column in the source, `edited_after_day_end` counts the postings known to have changed since.

Besides the contract's two tables, a task may read optional source tables of its own (jobcast.tasks.base.Source:
job_tags reads the tags employers ticked). They are snapshotted with the others; a board without the table gets
an empty snapshot of it; a day snapshotted before the task existed gets that table taken on its own, recorded
with its own mode (reconstructed, when taken late).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
from contextlib import ExitStack
from typing import Iterator

import numpy as np

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from jobcast.context import RunContext, StepResult, timed_step
from jobcast.db.conn import connect
from jobcast.errors import ConfigError, InputDataError, JobcastError, TransientError, is_transient
from jobcast.sources import SOURCES, all_sources, day_bounds, event_file
from jobcast.storage import atomic_dir, dir_hash, partition, read_manifest, scratch_path, write_manifest

log = logging.getLogger(__name__)


def _copy_query(cur, query_text: str, params: dict, schema: str, path) -> None:
    """COPY the query's rows to a CSV file: the rows stream to disk, never all into memory (a big board's 28
    days of events are tens of millions of rows)."""
    from psycopg2 import sql

    query = sql.SQL(query_text).format(source=sql.Identifier(schema))
    bound = cur.mogrify(query, params).decode()
    with open(path, "wb") as f:
        cur.copy_expert(f"copy ({bound}) to stdout with (format csv, header true)", f)


def _csv_batches(path, types: dict[str, pa.DataType]) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The CSV's rows as typed Arrow batches of about READ_BLOCK_BYTES each (bounded memory, any size)."""
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=READ_BLOCK_BYTES),
        convert_options=pacsv.ConvertOptions(
            column_types=types, strings_can_be_null=True, quoted_strings_can_be_null=False,
            null_values=[""],  # COPY's NULL; never "n/a", "NULL", "NaN", ... (pyarrow's defaults), which are data
            include_columns=list(types),
        ),
    )
    return reader.schema, iter(reader)


READ_BLOCK_BYTES = 16 << 20  # CSV read per batch: one Parquet row group each


class _PostingChecks:
    """The open postings' key rules, checked batch by batch as they stream (the query orders by job_id, so a
    duplicate is two equal neighbours): at least one row, no null job_id, no duplicate job_id."""

    def __init__(self) -> None:
        self.rows = self.nulls = self.dupes = 0
        self.example = None
        self._last = None

    def add(self, batch: pa.RecordBatch) -> None:
        ids = batch.column(batch.schema.get_field_index("job_id"))
        self.rows += len(ids)
        self.nulls += ids.null_count
        valid = ids.drop_null().to_numpy()
        if len(valid):
            prev = np.concatenate([[self._last if self._last is not None else valid[0] - 1], valid[:-1]])
            same = valid == prev
            if same.any():
                self.dupes += int(same.sum())
                self.example = self.example if self.example is not None else int(valid[same][0])
            self._last = valid[-1]

    def raise_if_bad(self, where: str) -> None:
        if self.rows == 0:
            raise InputDataError(f"{where}: no open postings (posted_at < day end, not closed); expected at least one")
        if self.nulls:
            raise InputDataError(f"{where}: {self.nulls} open postings with a null job_id; expected job_id not null (the key of "
                                 "every prediction)")
        if self.dupes:
            raise InputDataError(f"{where}: {self.dupes} duplicate job_id values (e.g. job_id={self.example}); expected job_id unique")


EVENT_GROUP_ROWS = 1 << 17  # events buffered per day before they are written as one Parquet row group


def _micros(t: dt.datetime) -> int:
    return (t - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(microseconds=1)


def _write_event_days(tmp, schema: pa.Schema, batches, *, days: list[dt.date], tz: str, taken_from: dt.datetime,
                      link_from) -> dict:
    """The events snapshot as one file per day (event_file): the days from `taken_from` on from `batches` (the
    source's rows, routed by their day in the board's timezone, in bounded memory: at most EVENT_GROUP_ROWS
    rows buffered per day), the earlier ones linked from `link_from`'s files. Every day gets a file, an empty
    one for a day without events. Returns the manifest's {"days": {day: rows}, "linked_from": day or None}."""
    bounds = [day_bounds(d, tz) for d in days]
    edges = np.array([_micros(s) for s, _ in bounds] + [_micros(bounds[-1][1])], dtype=np.int64)
    taken = [i for i, (s, _) in enumerate(bounds) if s >= taken_from]
    counts = dict.fromkeys(taken, 0)
    buffers: dict[int, list] = {i: [] for i in taken}
    writers: dict[int, pq.ParquetWriter] = {}

    def flush(i: int, last: bool = False) -> None:
        """Write the day's buffered rows in row groups of exactly EVENT_GROUP_ROWS (the rest waits, unless
        `last`): the same rows give the same bytes, however the source's rows were batched."""
        if i not in writers:
            writers[i] = pq.ParquetWriter(tmp / event_file(days[i]), schema, compression="zstd")
        rows = pa.Table.from_batches(buffers[i], schema)
        full = rows.num_rows if last else rows.num_rows - rows.num_rows % EVENT_GROUP_ROWS
        if full:
            writers[i].write_table(rows.slice(0, full).combine_chunks(), row_group_size=EVENT_GROUP_ROWS)
        buffers[i] = rows.slice(full).to_batches()

    try:
        for batch in batches:
            ts = batch.column(batch.schema.get_field_index("occurred_at")).cast(pa.int64()).to_numpy(zero_copy_only=False)
            idx = np.searchsorted(edges, ts, side="right") - 1
            found = np.unique(idx)
            if found.size and (found[0] < 0 or found[-1] >= len(days) or not set(found.tolist()) <= set(taken)):
                raise InputDataError(f"events snapshot: the source returned events outside {days[taken[0]]}..{days[-1]} "
                                     "(sql/queries/extract_events.sql must bound occurred_at by its parameters)")
            for i in found.tolist():
                part = batch if found.size == 1 else batch.filter(pa.array(idx == i))
                buffers[i].append(part)
                counts[i] += part.num_rows
                if sum(b.num_rows for b in buffers[i]) >= EVENT_GROUP_ROWS:
                    flush(i)
        for i in taken:
            flush(i, last=True)
    finally:
        for w in writers.values():
            w.close()
    out = {days[i].isoformat(): n for i, n in counts.items()}
    if link_from is not None:
        held = read_manifest(link_from)["days"]
        for d in days[:taken[0]]:
            src, dst = link_from / event_file(d), tmp / event_file(d)
            try:
                os.link(src, dst)  # the same bytes: stored once, hashed and archived (DVC) alike
            except OSError:  # a filesystem without hard links
                shutil.copy2(src, dst)
            out[d.isoformat()] = int(held[d.isoformat()])
    return {"days": dict(sorted(out.items())), "linked_from": None if link_from is None else link_from.name[3:]}


def snapshot(settings, ds: str) -> dict | None:
    """The manifests of date ds's snapshot ({table: manifest}), or None when it has not been taken."""
    parts = {name: partition(settings.data_dir, "raw", name, date=ds) for name in SOURCES}
    if not all(p.is_dir() for p in parts.values()):
        return None
    return {name: read_manifest(p) for name, p in parts.items()}


def provenance(settings, dates) -> dict:
    """How faithful a window's snapshots are, for the model's metadata: days per mode, and which days were
    reconstructed, refreshed, or known (updated_at) to hold postings edited after their day."""
    out: dict = {"modes": {}, "not_point_in_time": [], "refreshed": [], "edited_after_day_end": {}}
    for d in dates:
        ds = d if isinstance(d, str) else d.isoformat()
        m = read_manifest(partition(settings.data_dir, "raw", "job_postings", date=ds))
        mode = m.get("mode", "unknown")
        out["modes"][mode] = out["modes"].get(mode, 0) + 1
        if mode != "point_in_time":
            out["not_point_in_time"].append(ds)
        if m.get("refreshed"):
            out["refreshed"].append(ds)
        if m.get("edited_after_day_end"):
            out["edited_after_day_end"][ds] = m["edited_after_day_end"]
    return out


_TYPE_FAMILIES = {  # PostgreSQL types each contract column may have (information_schema.columns.data_type)
    "integer": {"bigint", "integer", "smallint"},
    "text": {"text", "character varying", "character", "name"},
    "timestamptz": {"timestamp with time zone"},
}


def _family(t: pa.DataType) -> str:
    return "integer" if pa.types.is_integer(t) else "timestamptz" if pa.types.is_timestamp(t) else "text"


def check_source_types(cur, settings, sources: dict) -> None:
    """A contract column of another type (salary_min as text, posted_at without a time zone) is an error naming
    the column, the type found and the types expected, before any row is read. Missing tables and columns are
    named by the queries themselves."""
    schema = settings.source_schema
    for name, (_query, types, _optional) in sources.items():
        cur.execute("select column_name, data_type from information_schema.columns where table_schema = %s "
                    "and table_name = %s", (schema, name))
        found = dict(cur.fetchall())
        for col, t in types.items():
            family = _family(t)
            if col in found and found[col] not in _TYPE_FAMILIES[family]:
                raise InputDataError(f"{schema}.{name}.{col}: type {found[col]}; expected {family} "
                                     f"({' / '.join(sorted(_TYPE_FAMILIES[family]))}) as in docs/source-contract.md")


def _edited_after(cur, settings, day_end) -> int | None:
    """Open postings whose optional `updated_at` is after the end of the day (None: the source has no such column)."""
    from psycopg2 import sql

    cur.execute("select 1 from information_schema.columns where table_schema = %s and table_name = 'job_postings' "
                "and column_name = 'updated_at'", (settings.source_schema,))
    if cur.fetchone() is None:
        return None
    cur.execute(sql.SQL("select count(*) from {}.job_postings where posted_at < %(end)s "
                        "and (closed_at is null or closed_at >= %(end)s) and updated_at >= %(end)s").format(
                            sql.Identifier(settings.source_schema)), {"end": day_end})
    return int(cur.fetchone()[0])


def run(ctx: RunContext, *, refresh: bool = False) -> StepResult:
    settings = ctx.settings
    tz = settings.param("run.timezone")
    day_start, day_end = day_bounds(ctx.logical_date, tz)
    lookback = settings.param_number("features.event_window_days", int)
    events_since, _ = day_bounds(ctx.logical_date - dt.timedelta(days=lookback), tz)
    existing = snapshot(settings, ctx.ds)
    sources = all_sources(settings.root)  # read once: the contract's queries and the tasks' own
    missing = {name: s for name, s in sources.items() if name not in SOURCES
               and not partition(settings.data_dir, "raw", name, date=ctx.ds).is_dir()}
    if existing is not None and not refresh and missing:
        # A task's own source table the day's snapshot predates: take just that table now (its manifest says when).
        return _take_now(ctx, None, missing, day_start=day_start, day_end=day_end, events_since=events_since)
    if existing is not None and not refresh:
        with timed_step("extract", ctx) as res:  # immutable: never re-read a past day from today's tables
            m = existing["job_postings"]
            log.info("snapshot of %s exists (taken %s, %s): reused; `jobcast extract --date %s --refresh` takes it again",
                     ctx.ds, m.get("taken_at", "before jobcast recorded it"), m.get("mode", "unknown"), ctx.ds)
            for name in sources:
                final = partition(settings.data_dir, "raw", name, date=ctx.ds)
                res.paths[name] = str(final)
                res.metrics[f"{name}_rows"] = read_manifest(final).get("rows")
                res.ids[f"{name}_version"] = dir_hash(final)[:12]
            res.rows = int(m.get("rows") or 0)
            res.metrics.update(reused=True, mode=m.get("mode", "unknown"))
        return res
    settle = settings.param_number("extract.events_settle_days", int)
    if not 0 <= settle <= lookback:
        raise ConfigError(f"params.yaml extract.events_settle_days={settle}: expected 0..features.event_window_days ({lookback})")
    link_from = None if refresh else _linkable(settings, ctx.logical_date, lookback, settle)
    return _take_now(ctx, existing, sources, day_start=day_start, day_end=day_end,
                     events_since=day_bounds(ctx.logical_date - dt.timedelta(days=settle), tz)[0] if link_from else events_since,
                     link_from=link_from)


def event_days(day: dt.date, lookback: int) -> list[dt.date]:
    """The days of events a snapshot of `day` holds: `lookback` days before it, and the day itself."""
    return [day - dt.timedelta(days=k) for k in range(lookback, -1, -1)]


def _linkable(settings, day: dt.date, lookback: int, settle: int):
    """The events snapshot of the day before `day` when it holds, one file per day, every day `day`'s snapshot
    links (all but the newest settle + 1; a snapshot written before files per day, or with a shorter window,
    does not): those files are linked, and only the newest days are read from the source."""
    prev = partition(settings.data_dir, "raw", "events", date=(day - dt.timedelta(days=1)).isoformat())
    held = read_manifest(prev).get("days") or {} if prev.is_dir() else {}
    need = [d.isoformat() for d in event_days(day, lookback)[:-(settle + 1)]]
    if all(d in held and (prev / event_file(d)).is_file() for d in need):
        return prev
    return None


def _take_now(ctx: RunContext, existing, sources: dict, *, day_start, day_end, events_since, link_from=None) -> StepResult:
    settings = ctx.settings
    with timed_step("extract", ctx) as res:
        taken_at = dt.datetime.now(dt.timezone.utc)
        lag_h = (taken_at - day_end).total_seconds() / 3600
        mode = "point_in_time" if 0 <= lag_h <= settings.param_number("extract.point_in_time_hours", float) else (
            "before_day_end" if lag_h < 0 else "reconstructed")
        csv_dir = scratch_path(settings.data_dir / "raw", f"extract-{ctx.ds}")
        csv_dir.mkdir()
        try:
            res = _take(ctx, res, csv_dir, existing=existing, taken_at=taken_at, lag_h=lag_h, mode=mode,
                        day_start=day_start, day_end=day_end, events_since=events_since, sources=sources,
                        link_from=link_from)
        finally:
            shutil.rmtree(csv_dir, ignore_errors=True)
    return res


def _take(ctx: RunContext, res: StepResult, csv_dir, *, existing, taken_at, lag_h, mode, day_start, day_end,
          events_since, sources: dict, link_from=None) -> StepResult:
    """Read the tables (`sources`: name -> (query, types, optional), from all_sources) in one transaction to CSV
    files, then stream them into the snapshot's Parquet files. With `link_from` (the day before's events
    snapshot, _linkable), the events query reads only the newest days (from `events_since`), and the older
    days' files are linked."""
    settings = ctx.settings
    tz, lookback = settings.param("run.timezone"), settings.param_number("features.event_window_days", int)
    window_start = day_bounds(ctx.logical_date - dt.timedelta(days=lookback), tz)[0]
    conn = connect(settings, application_name="jobcast-extract")
    try:
        # One repeatable-read snapshot for both tables, so postings and events agree.
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with conn.cursor() as cur:
            cur.execute("set time zone 'UTC'")
            check_source_types(cur, settings, sources)
            edited = _edited_after(cur, settings, day_end)
            for name, (text, types, optional) in sources.items():
                query_file = SOURCES[name][0] if name in SOURCES else f"task source {name}"
                if optional:
                    cur.execute("select to_regclass(%s) is null", (f"{settings.source_schema}.{name}",))
                    if cur.fetchone()[0]:  # the board has no such table: an empty snapshot of it
                        (csv_dir / f"{name}.csv").write_text(",".join(types) + "\n", encoding="utf-8")
                        continue
                try:
                    _copy_query(cur, text, {"day_start": day_start, "day_end": day_end, "events_since": events_since},
                                settings.source_schema, csv_dir / f"{name}.csv")
                except Exception as exc:  # psycopg2 errors name the missing table/column
                    if isinstance(exc, InputDataError):
                        raise
                    if is_transient(exc):  # the connection dropped, the server restarted: a retry gets past it
                        raise TransientError(f"{settings.source_schema}.{name} (sql/queries/{query_file}): "
                                             f"{type(exc).__name__}: {' '.join(str(exc).split())}; "
                                             "nothing written; retry") from exc
                    raise InputDataError(
                        f"{settings.source_schema}.{name} (sql/queries/{query_file}): {str(exc).strip()}; "
                        "expected the source contract in docs/source-contract.md"
                    ) from exc
        conn.rollback()
    except Exception as exc:  # the checks before the COPYs lose their connection the same way
        if isinstance(exc, JobcastError) or not is_transient(exc):
            raise
        raise TransientError(f"{settings.source_schema} snapshot of {ctx.ds}: {type(exc).__name__}: "
                             f"{' '.join(str(exc).split())}; nothing written; retry") from exc
    finally:
        conn.close()

    where = f"{settings.source_schema}.job_postings as of {day_end.isoformat()}"
    if mode != "point_in_time":
        log.warning("snapshot of %s taken %.0f h after the day ended: %s from today's source rows%s", ctx.ds, lag_h,
                    mode, "" if edited is None else f" ({edited} open postings edited since, by updated_at)")
    checks = _PostingChecks()
    rows, extra = {}, {}
    with ExitStack() as stack:  # both partitions are written in full before either replaces its old one
        for name, (_query, types, optional) in sources.items():
            final = partition(settings.data_dir, "raw", name, date=ctx.ds)
            tmp = stack.enter_context(atomic_dir(final))
            tmp.mkdir(parents=True)
            schema, batches = _csv_batches(csv_dir / f"{name}.csv", types)
            rows[name] = 0
            if name == "events":
                extra = _write_event_days(tmp, schema, batches, days=event_days(ctx.logical_date, lookback), tz=tz,
                                          taken_from=events_since, link_from=link_from)
                rows[name] = sum(extra["days"].values())
            else:
                with pq.ParquetWriter(tmp / "part-00000.parquet", schema, compression="zstd") as writer:
                    for batch in batches:
                        if name == "job_postings":
                            checks.add(batch)
                        writer.write_batch(batch)
                        rows[name] += batch.num_rows
            (csv_dir / f"{name}.csv").unlink()
            if name == "job_postings":
                checks.raise_if_bad(where)  # nothing replaced: the old snapshot (if any) stays
            elif name == "events" and rows[name] == 0:
                log.warning("%s.events has no events from %s to the end of %s: event features will be zero",
                            settings.source_schema, window_start.date(), ctx.ds)
            history = []
            if existing is not None and final.is_dir():  # --refresh: keep what the replaced snapshot was
                old = read_manifest(final)
                history = [*old.get("refreshed", []), {"replaced_version": dir_hash(final), "replaced_taken_at": old.get("taken_at"),
                                                       "at": taken_at, "run_id": ctx.run_id}]
            write_manifest(tmp, {"table": name, "rows": rows[name], "logical_date": ctx.ds,
                                 "day_start": day_start, "day_end": day_end, "taken_at": taken_at, "mode": mode,
                                 "lag_hours": round(lag_h, 1), "edited_after_day_end": edited,
                                 "source_schema": settings.source_schema, "run_id": ctx.run_id,
                                 **({"refreshed": history} if history else {}),
                                 **({"events_since": window_start, **extra} if name == "events" else {})})
    for name in sources:
        final = partition(settings.data_dir, "raw", name, date=ctx.ds)
        res.paths[name] = str(final)
        res.metrics[f"{name}_rows"] = rows[name]
        res.ids[f"{name}_version"] = dir_hash(final)[:12]
    res.rows = rows.get("job_postings", 0)
    res.metrics.update(reused=False, mode=mode, **({"refreshed": True} if existing is not None else {}))
    return res
