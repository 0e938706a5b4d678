"""Publish benchmark: jobcast publish vs a bare COPY vs pandas.to_sql, and reader latency around a swap.

Starts its own throwaway PostgreSQL (the project's LocalCluster), so it needs no running server.
    .venv/bin/python bench/publish.py [--rows 1000000] [--to-sql-rows 200000] [--long-reader-seconds 60]
Prints one table. Machines are shared and noisy: read the ratios, which are measured in the same run.
"""

from __future__ import annotations

import argparse
import io
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg2
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from jobcast.db.local import LocalCluster, find_bindir
from jobcast.db.migrate import migrate
from jobcast.publish.store import BatchInfo, publish

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_batch(directory: Path, rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p50 = rng.lognormal(np.log(4e6), 0.3, rows)
    df = pd.DataFrame({"job_id": np.arange(1, rows + 1, dtype=np.int64),
                       "salary_p10": p50 * 0.75, "salary_p50": p50, "salary_p90": p50 * 1.3})
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), directory / "part-00000.parquet")
    return df


def bare_copy(url: str, parquet_dir: Path) -> float:
    conn = psycopg2.connect(url)
    t0 = time.perf_counter()
    with conn, conn.cursor() as cur:
        cur.execute("create table bench_bare (batch_id bigint, job_id bigint, salary_p10 double precision, "
                    "salary_p50 double precision, salary_p90 double precision)")
        for f in parquet_dir.glob("*.parquet"):
            for rb in pq.ParquetFile(f).iter_batches(batch_size=100_000):
                t = pa.Table.from_batches([rb])
                t = t.add_column(0, "batch_id", pa.array([0] * t.num_rows, pa.int64()))
                buf = io.BytesIO()
                pacsv.write_csv(t, buf, pacsv.WriteOptions(include_header=False))
                buf.seek(0)
                cur.copy_expert("copy bench_bare from stdin with (format csv)", buf)
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def to_sql(url: str, df: pd.DataFrame, method) -> float:
    from sqlalchemy import create_engine

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg2://"))
    t0 = time.perf_counter()
    df.to_sql(f"bench_to_sql_{method or 'default'}", engine, index=False, method=method, chunksize=10_000)
    elapsed = time.perf_counter() - t0
    engine.dispose()
    return elapsed


def _reader_loop(url: str, seed: int, max_job: int, stop, out) -> None:
    rng = np.random.default_rng(seed)
    lat, errors = [], []
    try:
        conn = psycopg2.connect(url)
        conn.autocommit = True
        with conn.cursor() as cur:
            while not stop.is_set():
                t0 = time.perf_counter()
                cur.execute("select salary_p10, salary_p50, salary_p90, batch_id from predictions.job_salary where job_id = %s",
                            (int(rng.integers(1, max_job)),))
                if cur.fetchone() is None:
                    errors.append("no row")
                lat.append(time.perf_counter() - t0)
        conn.close()
    except Exception as exc:  # noqa: BLE001
        errors.append(repr(exc))
    out.put((lat, errors))


class Readers:
    """N reader processes (web apps are separate processes; threads here would fight the publisher for the
    GIL) looking up random job_ids through the public view; collects latencies and errors."""

    def __init__(self, url: str, n: int, max_job: int):
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        self.stop, self.out = ctx.Event(), ctx.Queue()
        self.procs = [ctx.Process(target=_reader_loop, args=(url, i, max_job, self.stop, self.out)) for i in range(n)]
        self.lat: list[float] = []
        self.errors: list[str] = []

    def __enter__(self):
        for p in self.procs:
            p.start()
        time.sleep(0.3)  # connected and warm
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for _ in self.procs:
            lat, errors = self.out.get()
            self.lat += lat
            self.errors += errors
        for p in self.procs:
            p.join()

    def pct(self, q: float) -> float:
        return float(np.percentile(self.lat, q)) * 1000 if self.lat else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--to-sql-rows", type=int, default=200_000, help="to_sql is slow: measured on a subset, reported as rows/s")
    ap.add_argument("--readers", type=int, default=8)
    ap.add_argument("--idle-seconds", type=float, default=5)
    ap.add_argument("--long-reader-seconds", type=float, default=60)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="jobcast-bench-") as tmp:
        tmp = Path(tmp)
        cluster = LocalCluster(base_dir=tmp / "pg", port=free_port(), bindir=find_bindir())
        url = cluster.start()
        try:
            conn = psycopg2.connect(url)
            migrate(conn, REPO / "sql" / "migrations")
            conn.close()
            df = make_batch(tmp / "b1", args.rows, 1)
            make_batch(tmp / "b2", args.rows, 2)
            make_batch(tmp / "b3", args.rows, 3)
            factory = lambda: psycopg2.connect(url)  # noqa: E731
            info = BatchInfo("salary", "2026-10-30", "bench", None, "bench", True, None)
            rows = []

            t_copy = bare_copy(url, tmp / "b1")
            t0 = time.perf_counter()
            publish(factory, tmp / "b1", info)
            t_pub = time.perf_counter() - t0
            sub = df.iloc[: args.to_sql_rows]
            t_sql = to_sql(url, sub, None)
            t_multi = to_sql(url, sub, "multi")
            copy_rps, pub_rps = args.rows / t_copy, args.rows / t_pub
            sql_rps, multi_rps = len(sub) / t_sql, len(sub) / t_multi
            rows += [
                ("bare COPY, unindexed table (baseline)", f"{copy_rps:,.0f} rows/s", "1.00x"),
                ("jobcast publish (COPY+index+checks+attach+swap)", f"{pub_rps:,.0f} rows/s", f"{pub_rps / copy_rps:.2f}x of COPY"),
                (f"pandas.to_sql default ({len(sub):,} rows)", f"{sql_rps:,.0f} rows/s", f"publish = {pub_rps / sql_rps:.1f}x"),
                (f"pandas.to_sql method=multi ({len(sub):,} rows)", f"{multi_rps:,.0f} rows/s", f"publish = {pub_rps / multi_rps:.1f}x"),
            ]

            with Readers(url, args.readers, args.rows) as idle:
                time.sleep(args.idle_seconds)
            with Readers(url, args.readers, args.rows) as busy:
                time.sleep(0.5)
                publish(factory, tmp / "b2", info)
                time.sleep(0.5)
            rows += [
                (f"lookup p50/p99, {args.readers} readers, idle", f"{idle.pct(50):.2f} / {idle.pct(99):.2f} ms", f"{len(idle.lat):,} reads, {len(idle.errors)} errors"),
                (f"lookup p50/p99, {args.readers} readers, during publish", f"{busy.pct(50):.2f} / {busy.pct(99):.2f} ms",
                 f"p99 = {busy.pct(99) / idle.pct(99):.2f}x idle; {len(busy.errors)} errors"),
            ]

            # A reader holding a transaction open over the view (e.g. a slow report) during a publish.
            long_conn = psycopg2.connect(url)
            with long_conn.cursor() as cur:
                cur.execute("begin; select count(*) from predictions.job_salary")
            with Readers(url, args.readers, args.rows) as during:
                t0 = time.perf_counter()
                res = publish(factory, tmp / "b3", info)
                t_publish_long = time.perf_counter() - t0
                time.sleep(max(0.0, min(args.long_reader_seconds, 5) - t_publish_long))
            long_conn.rollback()
            long_conn.close()
            rows += [
                ("swap with a reader txn open", f"{res['swap_seconds'] * 1000:.1f} ms",
                 f"whole publish {t_publish_long:.2f} s (load {res['load_seconds']:.2f} s) with {args.readers} readers"),
                ("readers meanwhile: max latency", f"{max(during.lat) * 1000:.1f} ms", f"{len(during.errors)} errors"),
            ]
        finally:
            cluster.destroy()

    w = max(len(r[0]) for r in rows)
    print(f"\npublish benchmark: {args.rows:,} prediction rows (PostgreSQL {cluster.bindir.parent.name}, local)\n")
    print(f"{'measure':<{w}}  {'value':>24}  note")
    for name, value, note in rows:
        print(f"{name:<{w}}  {value:>24}  {note}")


if __name__ == "__main__":
    main()
