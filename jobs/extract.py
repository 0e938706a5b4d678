"""extract: the logical date's snapshot of the source tables to Parquet.

raw/job_postings/dt=D: postings open at the end of D. raw/events/dt=D: events from features.event_window_days
before D to the end of D, so every date's features and labels come from its own snapshot (a backfill of any
date needs nothing from other dates' runs)."""

from __future__ import annotations

import datetime as dt
import io
import logging

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from jobcast.context import RunContext, StepResult, timed_step
from jobcast.db.conn import connect
from jobcast.errors import InputDataError, TransientError, is_transient
from jobcast.sources import SOURCES, day_bounds
from jobcast.storage import atomic_dir, dir_hash, partition, write_manifest

log = logging.getLogger(__name__)


def _read_query(cur, query_text: str, params: dict, schema: str, types: dict[str, pa.DataType]) -> pa.Table:
    from psycopg2 import sql

    query = sql.SQL(query_text).format(source=sql.Identifier(schema))
    bound = cur.mogrify(query, params).decode()
    buf = io.BytesIO()
    cur.copy_expert(f"copy ({bound}) to stdout with (format csv, header true)", buf)
    buf.seek(0)
    return pacsv.read_csv(
        buf,
        convert_options=pacsv.ConvertOptions(
            column_types=types, strings_can_be_null=True, quoted_strings_can_be_null=False,
            include_columns=list(types),
        ),
    )


def run(ctx: RunContext) -> StepResult:
    settings = ctx.settings
    tz = settings.param("run.timezone")
    day_start, day_end = day_bounds(ctx.logical_date, tz)
    lookback = int(settings.param("features.event_window_days"))
    events_since, _ = day_bounds(ctx.logical_date - dt.timedelta(days=lookback), tz)
    with timed_step("extract", ctx) as res:
        conn = connect(settings, application_name="jobcast-extract")
        try:
            # One repeatable-read snapshot for both tables, so postings and events agree.
            conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
            with conn.cursor() as cur:
                cur.execute("set time zone 'UTC'")
                tables = {}
                for name, (query_file, types) in SOURCES.items():
                    text = (settings.root / "sql" / "queries" / query_file).read_text(encoding="utf-8")
                    try:
                        tables[name] = _read_query(
                            cur, text, {"day_start": day_start, "day_end": day_end, "events_since": events_since}, settings.source_schema, types
                        )
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
        finally:
            conn.close()

        postings = tables["job_postings"]
        where = f"{settings.source_schema}.job_postings as of {day_end.isoformat()}"
        if postings.num_rows == 0:
            raise InputDataError(f"{where}: no open postings (posted_at < day end, not closed); expected at least one")
        counts = pc.value_counts(postings["job_id"])
        dupes = [v["values"].as_py() for v in counts if v["counts"].as_py() > 1]
        if dupes:
            raise InputDataError(
                f"{where}: {len(dupes)} duplicate job_id values (e.g. job_id={dupes[0]}); expected job_id unique"
            )
        if tables["events"].num_rows == 0:
            log.warning("%s.events has no events from %s to the end of %s: event features will be zero",
                        settings.source_schema, events_since.date(), ctx.ds)

        for name, table in tables.items():
            final = partition(settings.data_dir, "raw", name, date=ctx.ds)
            with atomic_dir(final) as tmp:
                tmp.mkdir(parents=True)
                pq.write_table(table, tmp / "part-00000.parquet", compression="zstd")
                write_manifest(tmp, {"table": name, "rows": table.num_rows, "logical_date": ctx.ds,
                                     "day_start": day_start, "day_end": day_end,
                                     **({"events_since": events_since} if name == "events" else {})})
            res.paths[name] = str(final)
            res.metrics[f"{name}_rows"] = table.num_rows
            res.ids[f"{name}_version"] = dir_hash(final)[:12]
        res.rows = postings.num_rows
    return res
