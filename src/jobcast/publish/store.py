"""Load a batch into its own table, check it, attach it, and make it live with a one-row pointer update.

Why this shape: readers query views that resolve the live batch through jobcast_internal.current_batch.
The slow work (COPY, index, ANALYZE) happens on a table no reader can see; ATTACH PARTITION takes only a
SHARE UPDATE EXCLUSIVE lock on the parent (readers don't conflict); the swap is an UPDATE of one row, so it
never waits on a reader's long transaction and readers never wait on it. A statement reads the pointer
and the rows under one snapshot: it sees the old batch or the new one, never a mix.

One race PostgreSQL leaves open, closed here (_settle): a statement fixes the partitions it may read when it
is planned, but takes its snapshot when it starts executing. A reader planned just before the ATTACH that
started executing just after the swap would see the new pointer and no partition for it: an empty view (the
reader test saw it in about 1 run in 4). So between the ATTACH and the swap, publish waits, at most
SETTLE_TIMEOUT_S, until every statement that was already running at the ATTACH has finished or been running for
that long (planning this view takes well under a millisecond); idle sessions, in a transaction or not, plan
their next statement afresh and never hold it up.
"""

from __future__ import annotations

import io
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from jobcast.errors import PublishBusy, PublishError, TransientError
from jobcast.tasks import get as spec

log = logging.getLogger(__name__)

SCHEMA = "jobcast_internal"
LOCK_NAMESPACE = 0x6A6F6270  # 'jobp': one publish, rollback or cleanup of a task at a time
RETENTION_LOCK_NAMESPACE = 0x6A6F6272  # 'jobr': one retention pass of a task at a time (outside the publish lock)
RETENTION_LOCK_TIMEOUT = "1s"  # the longest any retention statement waits for a reader
ATTACH_LOCK_TIMEOUT = "2s"
ATTACH_RETRIES = 5
SETTLE_TIMEOUT_S = 2.0  # the longest publish waits for statements planned before its ATTACH (_settle)


@dataclass(frozen=True)
class BatchInfo:
    task: str
    logical_date: str
    model_version: str
    data_version: str | None
    run_id: str | None
    validation_success: bool | None
    report_path: str | None
    lineage: dict | None = None  # what it was made from (jobcast.archive, migration 0007): reproduce reads it


class _ArrowCsvStream(io.RawIOBase):
    """A file-like CSV stream over Parquet record batches: COPY reads it chunk by chunk, memory stays bounded."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._buf = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buf) < size:
            try:
                self._buf += next(self._chunks)
            except StopIteration:
                break
        if size < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:size], self._buf[size:]
        return out


def _csv_chunks(parquet_dir: Path, columns: tuple[str, ...], batch_id: int, chunk_rows: int) -> Iterator[bytes]:
    opts = pacsv.WriteOptions(include_header=False)
    for f in sorted(parquet_dir.glob("*.parquet")):
        pf = pq.ParquetFile(f)
        for rb in pf.iter_batches(batch_size=chunk_rows, columns=list(columns)):
            tbl = pa.Table.from_batches([rb])
            for i, field in enumerate(tbl.schema):
                if pa.types.is_dictionary(field.type):  # e.g. a categorical category column: write its values
                    tbl = tbl.set_column(i, field.name, tbl.column(i).cast(field.type.value_type))
            tbl = tbl.add_column(0, "batch_id", pa.array([batch_id] * tbl.num_rows, pa.int64()))
            buf = io.BytesIO()
            pacsv.write_csv(tbl, buf, opts)
            yield buf.getvalue()


def copy_parquet(cur, table, parquet_dir: Path, columns: tuple[str, ...], batch_id: int, chunk_rows: int = 100_000) -> None:
    """COPY a predictions partition's rows into `table` (a psycopg2.sql identifier) as (batch_id, *columns),
    streamed as CSV chunk by chunk: the one way rows reach the database (publish; reproduce's comparison)."""
    sql = _sql()
    copy = sql.SQL("copy {} ({}) from stdin with (format csv)").format(
        table, sql.SQL(", ").join(map(sql.Identifier, ("batch_id", *columns))))
    cur.copy_expert(copy.as_string(cur.connection), _ArrowCsvStream(_csv_chunks(parquet_dir, columns, batch_id, chunk_rows)),
                    size=1 << 20)


def check_columns(parquet_dir: Path, task: str) -> int:
    """Refuse a batch whose files lack the task's columns (or have none); returns the row count."""
    columns = spec(task).columns
    files = sorted(parquet_dir.glob("*.parquet"))
    if not files:
        raise PublishError(f"{parquet_dir}: no Parquet files; expected a scored batch")
    rows = 0
    for f in files:
        names = pq.ParquetFile(f).schema_arrow.names
        missing = [c for c in columns if c not in names]
        if missing:
            raise PublishError(f"{f}: missing columns {missing} (has {names}); expected {list(columns)}")
        rows += pq.ParquetFile(f).metadata.num_rows
    if rows == 0:
        raise PublishError(f"{parquet_dir}: zero rows; refusing to publish an empty batch")
    return rows


def _sql():
    from psycopg2 import sql

    return sql


def publish(conn_factory, parquet_dir: Path, info: BatchInfo, *, force: bool = False, chunk_rows: int = 100_000,
            keep: int | None = None, on_phase: Callable[[str, int], None] | None = None) -> dict:
    """Publish one batch. Returns {batch_id, status, rows, live_batch_id, message}. Never changes the live
    batch unless the new one is fully loaded and checked. `keep`: prune to the newest N batches afterwards.
    `on_phase(phase, batch_id)` is called as each phase starts (copy, index, attach, swap): for logs and
    for the crash tests that kill a publisher mid-phase."""
    import psycopg2
    from psycopg2 import errors as pgerr

    sql = _sql()
    table, columns = spec(info.task).table, spec(info.task).columns
    expected_rows = check_columns(parquet_dir, info.task)
    phase = on_phase or (lambda name, bid: log.debug("publish %s batch %s: %s", info.task, bid, name))
    conn = conn_factory()
    conn.autocommit = True
    conn.set_client_encoding("UTF8")  # the CSV stream is UTF-8 (Japanese text in category, top3)
    batch_id = None
    part = None
    attached = False
    locked = False
    try:
        with conn.cursor() as cur:
            cur.execute("select pg_try_advisory_lock(%s, hashtext(%s))", (LOCK_NAMESPACE, info.task))
            if not cur.fetchone()[0]:
                raise PublishBusy(f"publish {info.task} {info.logical_date}: another publish of {info.task} is running "
                                   "(advisory lock held); retry when it has finished")
            locked = True
            _cleanup_abandoned(cur, info.task)
            cur.execute(
                """insert into predictions.batches (task, logical_date, model_version, data_version, status,
                       validation_success, report_path, run_id, lineage)
                   values (%s, %s, %s, %s, 'loading', %s, %s, %s, %s) returning batch_id""",
                (info.task, info.logical_date, info.model_version, info.data_version, info.validation_success,
                 info.report_path, info.run_id, None if info.lineage is None else json.dumps(info.lineage)),
            )
            batch_id = cur.fetchone()[0]
            part = sql.Identifier(SCHEMA, f"{table}_b{batch_id}")
            parent = sql.Identifier(SCHEMA, table)
            t0 = time.perf_counter()

            # 1. Load into a standalone table that no reader can see.
            conn.autocommit = False
            phase("copy", batch_id)
            # INCLUDING CONSTRAINTS: the parent's CHECKs (e.g. p10 <= p50 <= p90) hold while loading, and ATTACH
            # requires them anyway. NOT NULL on every prediction column even where the parent allows NULL
            # (salary_p10/p90 are NULL in batches from before migration 0003; new batches must be complete).
            cur.execute(sql.SQL("create table {} (like {} including defaults including constraints)").format(part, parent))
            cur.execute(sql.SQL("alter table {} {}").format(part, sql.SQL(", ").join(
                sql.SQL("alter column {} set not null").format(sql.Identifier(c)) for c in columns)))
            try:
                copy_parquet(cur, part, parquet_dir, columns, batch_id, chunk_rows)
            except pgerr.NotNullViolation as exc:
                raise PublishError(f"{parquet_dir}: null prediction values ({exc.diag.message_primary}); "
                                   "expected every column filled") from exc
            except pgerr.CheckViolation as exc:
                raise PublishError(f"{parquet_dir}: rows break {SCHEMA}.{table} constraint {exc.diag.constraint_name} "
                                   f"({_one_line(exc.diag.context or exc.diag.message_primary)}; columns batch_id,{','.join(columns)}); "
                                   "expected the rule of that constraint (sql/migrations)") from exc
            except pgerr.DataError as exc:  # e.g. top3 that is not JSON, text in a number column
                raise PublishError(f"{parquet_dir}: a value does not fit its column: {exc.diag.message_primary} "
                                   f"({_one_line(exc.diag.context)}); expected the {info.task} columns {list(columns)} "
                                   "as in docs/prediction-tables.md") from exc
            cur.execute(sql.SQL("select count(*) from {}").format(part))
            loaded = cur.fetchone()[0]
            if loaded != expected_rows:
                raise PublishError(f"{parquet_dir}: loaded {loaded} rows but the files hold {expected_rows}")
            # 2. Index and constrain it like the parent, so ATTACH needs no scan and lookups use the index.
            phase("index", batch_id)
            try:
                cur.execute(sql.SQL("create unique index on {} (batch_id, job_id)").format(part))
            except pgerr.UniqueViolation as exc:
                raise PublishError(f"{parquet_dir}: duplicate job_id values ({exc.diag.message_detail}); "
                                   "expected one prediction per job_id") from exc
            cur.execute(sql.SQL("alter table {} add constraint {} check (batch_id = {})").format(
                part, sql.Identifier(f"{table}_b{batch_id}_batch"), sql.Literal(batch_id)))
            cur.execute(sql.SQL("analyze {}").format(part))
            cur.execute("update predictions.batches set status = 'validated', row_count = %s, updated_at = now() "
                        "where batch_id = %s", (loaded, batch_id))
            conn.commit()
            load_s = time.perf_counter() - t0

            # 3. Attach: SHARE UPDATE EXCLUSIVE on the parent; a short lock_timeout + retry so we never
            #    sit in a lock queue in front of readers.
            phase("attach", batch_id)
            for attempt in range(1, ATTACH_RETRIES + 1):
                try:
                    cur.execute("set local lock_timeout = %s", (ATTACH_LOCK_TIMEOUT,))
                    cur.execute(sql.SQL("alter table {} attach partition {} for values in ({})").format(
                        parent, part, sql.Literal(batch_id)))
                    conn.commit()
                    attached = True
                    break
                except pgerr.LockNotAvailable:
                    conn.rollback()
                    if attempt == ATTACH_RETRIES:
                        raise PublishBusy(f"publish {info.task}: could not attach batch {batch_id} "
                                           f"after {ATTACH_RETRIES} tries ({ATTACH_LOCK_TIMEOUT} lock timeout each)")
                    time.sleep(0.2 * attempt)

            _settle(conn)
            # 4. The swap: one short transaction on the pointer row and the registry.
            t1 = time.perf_counter()
            cur.execute("set local lock_timeout = '5s'")
            cur.execute("select c.batch_id, b.logical_date::text from jobcast_internal.current_batch c "
                        "join predictions.batches b using (batch_id) where c.task = %s for update of c", (info.task,))
            live = cur.fetchone()
            phase("swap", batch_id)  # inside the swap transaction, pointer row locked
            if live and live[1] > info.logical_date and not force:
                message = (f"backfill: kept live batch {live[0]} for newer date {live[1]}; "
                           f"batch {batch_id} for {info.logical_date} recorded as history")
                cur.execute("update predictions.batches set status = 'superseded', message = %s, updated_at = now() "
                            "where batch_id = %s", (message, batch_id))
                conn.commit()
                return {"batch_id": batch_id, "status": "superseded", "rows": loaded, "live_batch_id": live[0],
                        "message": message, "load_seconds": round(load_s, 2), "swap_seconds": 0.0}
            cur.execute(
                """insert into jobcast_internal.current_batch (task, batch_id) values (%s, %s)
                   on conflict (task) do update set batch_id = excluded.batch_id, switched_at = now()""",
                (info.task, batch_id))
            if live:
                cur.execute("update predictions.batches set status = 'superseded', updated_at = now() "
                            "where batch_id = %s", (live[0],))
            cur.execute("update predictions.batches set status = 'published', published_at = now(), updated_at = now() "
                        "where batch_id = %s", (batch_id,))
            conn.commit()
            swap_s = time.perf_counter() - t1
            # The new batch is live. From here on nothing may fail the step: a retry would republish a batch
            # that is already out. Release the lock first, so the next publish never waits on our retention.
            _unlock(conn, info.task)
            locked = False
            warnings = _after_swap(conn, info.task, batch_id, keep, phase)
            return {"batch_id": batch_id, "status": "published", "rows": loaded, "live_batch_id": batch_id,
                    "previous_batch_id": live[0] if live else None, "message": "published", "warnings": warnings,
                    "load_seconds": round(load_s, 2), "swap_seconds": round(swap_s, 4)}
    except Exception as exc:
        if not conn.closed:
            conn.rollback()
            if batch_id is not None:
                _mark_failed(conn, batch_id, part if not attached else None, str(exc))
        if isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)):  # connection lost, a timeout
            raise TransientError(f"publish {info.task} {info.logical_date}: {type(exc).__name__}: {_one_line(str(exc))}; "
                                 "the live batch is unchanged; retry") from exc
        if isinstance(exc, psycopg2.Error):
            raise PublishError(f"publish {info.task} {info.logical_date}: {str(exc).strip()}") from exc
        raise
    finally:
        if not conn.closed:
            if locked:
                _unlock(conn, info.task)
            conn.close()


def _settle(conn, timeout_s: float = SETTLE_TIMEOUT_S) -> int:
    """Wait until no statement that was running when the ATTACH committed could still be between its planning
    (partitions fixed, the new one not among them) and its execution snapshot (which would see the swap); see
    the module's docstring. Bounded: a statement running for timeout_s is long past its planning. Returns how
    many such statements there were at first."""
    deadline = time.monotonic() + timeout_s
    with conn.cursor() as cur:
        cur.execute("select clock_timestamp()")
        attached_at = cur.fetchone()[0]
        first = None
        while True:
            cur.execute("""select count(*) from pg_stat_activity
                           where state = 'active' and query_start < %s and pid <> pg_backend_pid()
                             and datname = current_database() and backend_type = 'client backend'""", (attached_at,))
            running = cur.fetchone()[0]
            first = running if first is None else first
            if running == 0 or time.monotonic() >= deadline:
                break
            time.sleep(0.002)
    conn.commit()
    return first


def _after_swap(conn, task: str, batch_id: int, keep: int | None, phase) -> list[str]:
    """Retention and bookkeeping after the swap: problems become warnings, logged and recorded on the batch row."""
    warnings = []
    try:
        phase("retention", batch_id)
        kept = prune(conn, task, keep)
        if kept["deferred"]:
            warnings.append(kept["note"])
    except Exception as exc:  # noqa: BLE001 - the batch is live; whatever this was, it is not the batch's failure
        if not conn.closed:
            try:
                conn.rollback()
            except Exception:  # noqa: BLE001
                pass
        warnings.append(f"retention failed after the swap ({type(exc).__name__}: {_one_line(str(exc))}); "
                        "old batches keep their data until the next publish or `jobcast cleanup`")
    for w in warnings:
        log.warning("publish %s batch %s is live, but: %s", task, batch_id, w)
    if warnings:
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("set lock_timeout = %s", (RETENTION_LOCK_TIMEOUT,))
                cur.execute("update predictions.batches set message = left(coalesce(message || '; ', '') || %s, 2000), "
                            "updated_at = now() where batch_id = %s", ("; ".join(warnings), batch_id))
        except Exception as exc:  # noqa: BLE001
            log.warning("publish %s batch %s: could not record the warnings on the batch row: %s", task, batch_id, exc)
    return warnings


def _one_line(text: str | None) -> str:
    return " ".join(str(text or "").split())


def _unlock(conn, task: str) -> None:
    """Release the task's publish lock before closing. Closing releases it too, but only once the server
    backend has exited, which the client does not wait for: a publish or rollback right after would
    find the lock still held."""
    import psycopg2

    try:
        conn.rollback()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("select pg_advisory_unlock(%s, hashtext(%s))", (LOCK_NAMESPACE, task))
    except psycopg2.Error:
        log.debug("publish %s: explicit unlock failed; closing the connection releases the lock", task)


def _drop_batch_table(cur, task: str, batch_id: int) -> None:
    """Detach (if attached) and drop a batch's table without blocking readers.

    DETACH ... CONCURRENTLY takes no lock that conflicts with readers; it waits for transactions that may
    still read the partition, then finishes. A detach interrupted half way (killed, or timed out by the
    caller's lock_timeout) is left pending and FINALIZEd by the next call.
    """
    sql = _sql()
    table = spec(task).table
    name = sql.Identifier(SCHEMA, f"{table}_b{batch_id}")
    cur.execute(
        """select c.relispartition, coalesce(i.inhdetachpending, false)
           from pg_class c join pg_namespace n on n.oid = c.relnamespace
           left join pg_inherits i on i.inhrelid = c.oid
           where n.nspname = %s and c.relname = %s""", (SCHEMA, f"{table}_b{batch_id}"))
    row = cur.fetchone()
    if row is None:
        return
    attached, pending = row
    parent = sql.Identifier(SCHEMA, table)
    if pending:
        cur.execute(sql.SQL("alter table {} detach partition {} finalize").format(parent, name))
    elif attached:
        cur.execute(sql.SQL("alter table {} detach partition {} concurrently").format(parent, name))
    cur.execute(sql.SQL("drop table {}").format(name))


def prune(conn, task: str, keep: int | None, *, lock_timeout: str = RETENTION_LOCK_TIMEOUT) -> dict:
    """Drop the tables of batches no reader needs; every statement waits at most `lock_timeout`.

    What goes, in this order: a detach left pending by an earlier pass; failed batches' tables; with `keep`,
    the data of every batch that is neither live nor among the newest `keep` superseded or rolled-back ones.
    Registry rows stay (history); only the storage goes. A reader idle in a transaction over the view makes
    the first detach time out: the pass stops there and reports the rest as deferred (PostgreSQL allows one
    pending detach per table, so later ones would fail anyway). Runs in autocommit (DETACH CONCURRENTLY
    needs it) under its own advisory lock, so it never holds up a publish of the task.

    Returns {"dropped": [...], "deferred": [...], "note": str | None}.
    """
    from psycopg2 import errors as pgerr

    table = spec(task).table
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("select pg_try_advisory_lock(%s, hashtext(%s))", (RETENTION_LOCK_NAMESPACE, task))
        if not cur.fetchone()[0]:
            return {"dropped": [], "deferred": [], "note": None}  # another pass of this task is at it
        try:
            cur.execute("set lock_timeout = %s", (lock_timeout,))
            cur.execute(
                """select b.batch_id from predictions.batches b
                   where b.task = %(task)s and b.status in ('superseded', 'rolled_back', 'failed')
                     and b.batch_id not in (select batch_id from jobcast_internal.current_batch)
                     and (%(keep)s is null and b.status = 'failed'
                          or %(keep)s is not null and b.batch_id not in (
                         select batch_id from predictions.batches
                         where task = %(task)s and status in ('superseded', 'rolled_back')
                           and batch_id not in (select batch_id from jobcast_internal.current_batch)
                         order by batch_id desc limit %(keep)s))
                     and to_regclass(format('%%I.%%I', %(schema)s, %(table)s || '_b' || b.batch_id)) is not null
                   order by (select i.inhdetachpending from pg_inherits i
                             where i.inhrelid = to_regclass(format('%%I.%%I', %(schema)s, %(table)s || '_b' || b.batch_id)))
                            desc nulls last, b.batch_id""",
                {"task": task, "keep": keep, "schema": SCHEMA, "table": table})
            victims = [r[0] for r in cur.fetchall()]
            dropped = []
            for i, bid in enumerate(victims):
                try:
                    _drop_batch_table(cur, task, bid)
                except (pgerr.LockNotAvailable, pgerr.ObjectNotInPrerequisiteState) as exc:
                    deferred = victims[i:]
                    note = (f"retention deferred for batches {deferred}: {_one_line(str(exc))} (a reader still has a "
                            f"transaction open on predictions.{spec(task).view}); the next publish or `jobcast cleanup` "
                            "finishes it")
                    log.warning("%s: %s", task, note)
                    cur.execute("update predictions.batches set message = left(coalesce(message || '; ', '') || %s, 2000), "
                                "updated_at = now() where batch_id = %s and coalesce(message, '') not like '%%retention deferred%%'",
                                ("retention deferred: a reader held the table", bid))
                    return {"dropped": dropped, "deferred": deferred, "note": note}
                cur.execute("update predictions.batches set message = coalesce(message || '; ', '') || 'data dropped by retention', "
                            "updated_at = now() where batch_id = %s", (bid,))
                dropped.append(bid)
            return {"dropped": dropped, "deferred": [], "note": None}
        finally:
            cur.execute("reset lock_timeout")
            cur.execute("select pg_advisory_unlock(%s, hashtext(%s))", (RETENTION_LOCK_NAMESPACE, task))


def rollback(conn, task: str, to_batch: int | None = None) -> dict:
    """Make the previous (or a named) batch live again, in one short transaction; the current one becomes rolled_back."""
    from psycopg2 import errors as pgerr

    table = spec(task).table
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            cur.execute("select pg_try_advisory_xact_lock(%s, hashtext(%s))", (LOCK_NAMESPACE, task))
            if not cur.fetchone()[0]:
                raise PublishBusy(f"rollback {task}: a publish of {task} is running; retry when it has finished")
            # Retention runs outside the publish lock: never make live a batch it may be detaching right now.
            cur.execute("select pg_try_advisory_xact_lock(%s, hashtext(%s))", (RETENTION_LOCK_NAMESPACE, task))
            if not cur.fetchone()[0]:
                raise PublishBusy(f"rollback {task}: retention of {task} is dropping old batches; retry in a few seconds")
            cur.execute("set local lock_timeout = '5s'")
            cur.execute("select batch_id from jobcast_internal.current_batch where task = %s for update", (task,))
            row = cur.fetchone()
            if row is None:
                raise PublishError(f"rollback {task}: no live batch to roll back")
            current = row[0]
            if to_batch is None:
                cur.execute(
                    """select batch_id from predictions.batches
                       where task = %s and batch_id <> %s and published_at is not null and status = 'superseded'
                         and exists (select 1 from pg_inherits i  -- attached, and not on its way out (detach pending)
                                     where i.inhrelid = to_regclass(format('%%I.%%I', %s, %s || '_b' || batch_id))
                                       and not i.inhdetachpending)
                       order by published_at desc limit 1""", (task, current, SCHEMA, table))
                found = cur.fetchone()
                if found is None:
                    raise PublishError(f"rollback {task}: no earlier published batch with data to return to "
                                       "(retention may have dropped it); see `jobcast batches`")
                target = found[0]
            else:
                cur.execute("select task, status from predictions.batches where batch_id = %s", (to_batch,))
                found = cur.fetchone()
                if found is None or found[0] != task:
                    raise PublishError(f"rollback {task} --to {to_batch}: no such {task} batch")
                if found[1] not in ("superseded", "rolled_back", "published"):
                    raise PublishError(f"rollback {task} --to {to_batch}: batch is {found[1]}; only a batch that "
                                       "passed validation and loaded fully can be made live")
                cur.execute("select 1 from pg_inherits i join pg_class c on c.oid = i.inhrelid "
                            "join pg_namespace n on n.oid = c.relnamespace where n.nspname = %s and c.relname = %s "
                            "and not i.inhdetachpending", (SCHEMA, f"{table}_b{to_batch}"))
                if cur.fetchone() is None:
                    raise PublishError(f"rollback {task} --to {to_batch}: its data was dropped by retention")
                target = to_batch
            if target == current:
                raise PublishError(f"rollback {task} --to {target}: already live")
            cur.execute("update jobcast_internal.current_batch set batch_id = %s, switched_at = now() where task = %s",
                        (target, task))
            cur.execute("update predictions.batches set status = 'rolled_back', updated_at = now(), "
                        "message = coalesce(message || '; ', '') || %s where batch_id = %s",
                        (f"rolled back to batch {target}", current))
            cur.execute("update predictions.batches set status = 'published', published_at = now(), updated_at = now() "
                        "where batch_id = %s", (target,))
        conn.commit()
    except pgerr.LockNotAvailable as exc:
        conn.rollback()
        raise PublishBusy(f"rollback {task}: the pointer row is locked by another swap; retry") from exc
    except Exception:
        conn.rollback()
        raise
    return {"task": task, "live_batch_id": target, "rolled_back_batch_id": current}


def cleanup(conn, task: str, keep: int | None = None) -> dict:
    """Fail what interrupted runs left behind (loading/validated batches that are not live), then drop the
    tables that may go (`prune`: pending detaches, failed batches, and with `keep`, old data)."""
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("select pg_try_advisory_lock(%s, hashtext(%s))", (LOCK_NAMESPACE, task))
        if not cur.fetchone()[0]:
            raise PublishBusy(f"cleanup {task}: a publish of {task} is running; retry when it has finished")
        try:
            abandoned = _cleanup_abandoned(cur, task)
        finally:
            cur.execute("select pg_advisory_unlock(%s, hashtext(%s))", (LOCK_NAMESPACE, task))
    return {"abandoned": abandoned, **prune(conn, task, keep)}


def _mark_failed(conn, batch_id: int, unattached_part, message: str) -> None:
    sql = _sql()
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("update predictions.batches set status = 'failed', message = %s, updated_at = now() "
                    "where batch_id = %s", (message[:2000], batch_id))
        if unattached_part is not None:
            cur.execute(sql.SQL("drop table if exists {}").format(unattached_part))


def _cleanup_abandoned(cur, task: str) -> list[int]:
    """Mark batches left 'loading'/'validated' by a killed run as failed (we hold the task's lock, so none
    is in flight); `prune` drops their tables without waiting long on readers."""
    cur.execute(
        """update predictions.batches set status = 'failed', updated_at = now(),
                  message = coalesce(message || '; ', '') || 'abandoned by an interrupted run; cleaned up'
           where task = %s and status in ('loading', 'validated')
             and batch_id not in (select batch_id from jobcast_internal.current_batch)
           returning batch_id""", (task,))
    abandoned = sorted(r[0] for r in cur.fetchall())
    for bid in abandoned:
        log.warning("batch %s of %s was left behind by an interrupted run; marked failed", bid, task)
    return abandoned
