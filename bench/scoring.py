"""Spark scoring against the plain single-process path, and incremental against full rescoring.

    .venv/bin/python bench/scoring.py [--date 2026-10-30] [--rows 200000] [--tasks salary ...] [--rounds 2]

Needs the demo's features and champions (`make demo`). In its own data dir (.jobcast/bench/scoring/data) it
writes a features partition of --rows postings (the day's real rows repeated under new job_ids) and, for the
next day, the same rows with 1% of them changed. Then, with the same champion model and the same cores, per
task and round:
- raw: one process reads the partition (pyarrow), predicts in batches of 100k rows (LightGBM with every core,
  its text model), writes Parquet: the throughput to match;
- spark: `jobs.score.run(..., full=True)`, the path `jobcast score --full` takes (session warm), reasons included;
- without reasons: the same with params score.reasons false: what the reasons cost (the budget is 2x);
- incremental: `jobs.score.run` on the next day, 1% changed: only those are scored, the rest carried.
Prints one table: seconds (best of the rounds), throughput of spark relative to raw, spark with reasons relative
to without, incremental relative to full.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BENCH = ROOT / ".jobcast" / "bench" / "scoring"
BATCH = 100_000  # rows per prediction call of the raw path: Spark's spark.sql.execution.arrow.maxRecordsPerBatch


def make_partitions(src: Path, data: Path, date: dt.date, rows: int) -> tuple[str, str]:
    """dt=D: `rows` postings (src's rows repeated, job_ids made unique); dt=D+1: the same with 1% changed."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from jobcast.storage import read_manifest, write_manifest

    base = pq.read_table(src)
    reps = -(-rows // base.num_rows)
    parts = []
    for r in range(reps):
        t = base.set_column(base.schema.get_field_index("job_id"), "job_id",
                            pc.add(base["job_id"], pa.scalar(r * 10_000_000, pa.int64())))
        parts.append(t)
    table = pa.concat_tables(parts).slice(0, rows)
    days = (date.isoformat(), (date + dt.timedelta(days=1)).isoformat())
    manifest = read_manifest(src)
    changed = np.random.default_rng(0).random(rows) < 0.01
    for i, day in enumerate(days):
        out = data / "features" / f"dt={day}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        t = table
        if i == 1:  # 1% of the postings edited: a longer description
            j = t.schema.get_field_index("desc_len")
            t = t.set_column(j, "desc_len", pa.array(np.where(changed, t["desc_len"].to_numpy() + 1, t["desc_len"].to_numpy())))
            t = t.set_column(t.schema.get_field_index("logical_date"), "logical_date",
                             pa.array([dt.date.fromisoformat(day)] * rows, pa.date32()))
        per_file = -(-rows // 8)
        for k in range(8):
            pq.write_table(t.slice(k * per_file, per_file), out / f"part-{k:05d}.parquet", compression="zstd")
        write_manifest(out, {**manifest, "logical_date": day, "rows": rows})
    return days


def raw_score(task: str, model_dir: Path, feats: Path, out: Path) -> float:
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    from jobcast.models.task_models import Predictor

    t0 = time.perf_counter()
    model = Predictor.load(task, model_dir)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    writer = None
    # In batches of Spark's Arrow batch size (jobcast.spark: maxRecordsPerBatch), as any plain process with
    # bounded memory would: the whole of a 1M-row partition's text matrices, with reasons, exceeds 24 GB.
    for batch in ds.dataset(feats, format="parquet").to_batches(columns=["job_id", *model.schema.columns], batch_size=BATCH):
        pred = pa.Table.from_pandas(model.predict(batch.to_pandas(), num_threads=os.cpu_count() or 1), preserve_index=False)
        if writer is None:
            writer = pq.ParquetWriter(out / "part-00000.parquet", pred.schema, compression="zstd")
        writer.write_table(pred)
    if writer is not None:
        writer.close()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--date", default="2026-10-30")
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--tasks", nargs="+", help="default: every declared task")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    from jobcast.config import Settings

    real = Settings.load()
    src = real.data_dir / "features" / f"dt={args.date}"
    if not src.is_dir():
        raise SystemExit(f"{src}: no features; run `make demo` (or `jobcast run --date {args.date}`) first")
    data = BENCH / "data"
    day, next_day = make_partitions(src, data, dt.date.fromisoformat(args.date), args.rows)
    os.environ["JOBCAST_DATA_DIR"] = str(data)
    os.environ["JOBCAST_MODELS_DIR"] = str(real.models_dir)

    from jobcast.context import RunContext, parse_date
    from jobcast.models import registry

    from jobs import score

    import dataclasses

    from jobcast import tasks as declared

    settings = Settings.load()
    ctx, ctx_next = (RunContext(logical_date=parse_date(d), settings=settings, run_id="bench") for d in (day, next_day))
    plain = dataclasses.replace(settings, params={**settings.params, "score": {**settings.params["score"], "reasons": False}})
    ctx_plain = RunContext(logical_date=parse_date(day), settings=plain, run_id="bench")
    ctx.spark().range(1000).count()  # session start is not scoring
    rows = []
    for task in args.tasks or declared.names():
        model_dir = registry.champion_dir(settings, task).resolve()
        t = {"raw": [], "spark": [], "plain": [], "incremental": []}
        for _ in range(args.rounds):
            t["raw"].append(raw_score(task, model_dir, data / "features" / f"dt={day}", BENCH / "raw" / task))
            t0 = time.perf_counter()
            score.run(ctx, task=task, full=True)
            t["spark"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            score.run(ctx_plain, task=task, full=True)
            t["plain"].append(time.perf_counter() - t0)
            score.run(ctx, task=task, full=True)  # the day's partition with reasons again: the next day carries from it
            t0 = time.perf_counter()
            res = score.run(ctx_next, task=task)
            t["incremental"].append(time.perf_counter() - t0)
        raw, spark, plain_s, inc = (min(v) for v in t.values())
        rows.append((task, args.rows, raw, spark, raw / spark, plain_s, spark / plain_s, inc, res.metrics["rescored"], inc / spark))
    print(f"scoring {args.rows:,} postings, {os.cpu_count()} cores, best of {args.rounds} rounds")
    print("| task | postings | raw s | spark s | spark throughput / raw | spark without reasons s | with / without reasons "
          "| incremental s (1% changed) | rescored | incremental / full |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for task, n, raw, spark, ratio, plain_s, cost, inc, resc, rel in rows:
        print(f"| {task} | {n:,} | {raw:.1f} | {spark:.1f} | {ratio:.2f} | {plain_s:.1f} | {cost:.2f} | {inc:.1f} | {resc:,} | {rel:.3f} |")


if __name__ == "__main__":
    main()
