"""jobcast on real job data: each labelled set in ../shared/data loaded as a board, run through the normal CLI
path, and the published view scored against the hidden labels, next to the sets' baseline recomputed here.

    .venv/bin/python bench/real_data.py [--data ../shared/data] [--only uk_major ...] [--json metrics/real_data.json]

A board per (data set, label level), in its own database on the project-local PostgreSQL, with its own data,
models and reports dirs under .jobcast/bench/real_data/<name>/:
- one posting per row, the text as the title (the sets have no other text), the label as the filed category
  on the 80% train rows and NULL on the 20% test rows (train_test_split(test_size=0.2, random_state=0) over
  the rows in file order, the split of ../shared/data/README.md);
- prefecture, employment type and company drawn at random (the sets have none: they carry no signal), every
  posting open on the logical date, posted over the last WINDOW_DAYS days (5% on the last day, which is the
  training's time-based holdout), a few random views;
- then `jobcast run --date D --tasks category --train` (extract, raw gate, features, features gate, window,
  train with its gate, score, predictions gate, publish), in a subprocess like a user would run it;
- accuracy and macro-F1 of predictions.job_category on the test rows; the baseline (TF-IDF + LinearSVC(C=0.5)
  with the README's n-grams) fitted on the same train rows, in this process.

Prints one table and writes the figures as DVC metrics (metrics/real_data.json).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

DATE = dt.date(2026, 10, 30)
WINDOW_DAYS, HOLDOUT_DAYS = 7, 1


@dataclass(frozen=True)
class Board:
    name: str
    file: str
    text: str
    label: str
    baseline: str   # "word+char_wb" or "word": the README's baseline features for this set
    goal: float | None = None


BOARDS = [
    Board("uk_major", "ons_soc2010_job_titles/ons_soc2010_titles.csv.gz", "text", "soc2010_major", "word+char_wb", 0.73),
    Board("uk_submajor", "ons_soc2010_job_titles/ons_soc2010_titles.csv.gz", "text", "soc2010_submajor", "word+char_wb"),
    Board("uk_unit", "ons_soc2010_job_titles/ons_soc2010_titles.csv.gz", "text", "soc2010_unit", "word+char_wb"),
    Board("onet_major", "onet_task_statements/onet_tasks_labeled.csv.gz", "task", "soc_major", "word", 0.66),
]
PREFS = ["東京都", "大阪府", "愛知県", "福岡県", "北海道"]
EMPLOYMENT = ["正社員", "契約社員", "アルバイト・パート"]
PARAMS = f"""# bench/real_data.py: a board whose postings all went live in the last {WINDOW_DAYS} days
train:
  window_days: {WINDOW_DAYS}
  holdout_days: {HOLDOUT_DAYS}
"""


def split(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    return train_test_split(np.arange(len(df)), test_size=0.2, random_state=0)


def baseline(board: Board, df: pd.DataFrame, tr: np.ndarray, te: np.ndarray) -> tuple[float, float]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics import f1_score
    from sklearn.pipeline import make_pipeline, make_union
    from sklearn.svm import LinearSVC

    word = TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True)
    vec = make_union(word, TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), sublinear_tf=True)) \
        if board.baseline == "word+char_wb" else word
    x, y = df[board.text].astype(str).to_numpy(), df[board.label].astype(str).to_numpy()
    pred = make_pipeline(vec, LinearSVC(C=0.5)).fit(x[tr], y[tr]).predict(x[te])
    return float(np.mean(pred == y[te])), float(f1_score(y[te], pred, average="macro", zero_division=0))


def load_board(url: str, board: Board, df: pd.DataFrame, tr: np.ndarray) -> np.ndarray:
    """The data set as app tables of the source contract; returns the job_id of every row."""
    import psycopg2

    rng = np.random.default_rng(0)
    n = len(df)
    tz = dt.timezone(dt.timedelta(hours=9))
    day_end = dt.datetime.combine(DATE + dt.timedelta(days=1), dt.time(), tz)
    # Seconds before the logical day's end: 5% of the postings went live on the last day (the time-based holdout
    # of train.holdout_days=1, enough rows for the gate), the rest over the days before.
    age = np.where(rng.random(n) < 0.05, rng.uniform(3600, 86400, n), rng.uniform(86400, WINDOW_DAYS * 86400, n))
    posted = pd.Series(pd.Timestamp(day_end) - pd.to_timedelta(age, unit="s"))
    job_id = np.arange(1, n + 1)
    category = pd.Series([None] * n, dtype=object)
    category.iloc[tr] = df[board.label].astype(str).to_numpy()[tr]
    postings = pd.DataFrame({
        "job_id": job_id, "company_id": rng.integers(1, 500, n), "title": df[board.text].astype(str).to_numpy(),
        "description": None, "prefecture": np.array(PREFS)[rng.integers(0, len(PREFS), n)],
        "employment_type": np.array(EMPLOYMENT)[rng.integers(0, len(EMPLOYMENT), n)], "category": category,
        "salary_min": None, "salary_max": None, "posted_at": posted, "closed_at": None})
    # Two views a posting at random times after it went live, a few applies: enough for the event features.
    ev_job = np.repeat(job_id, 2)
    when = pd.Timestamp(day_end) - pd.to_timedelta(np.repeat(age, 2) * rng.uniform(0.01, 1, len(ev_job)), unit="s")
    events = pd.DataFrame({"event_id": np.arange(1, len(ev_job) + 1), "job_id": ev_job, "session_id": np.arange(len(ev_job)),
                           "event_type": np.where(rng.random(len(ev_job)) < 0.05, "apply", "view"), "occurred_at": when})
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute((ROOT / "sql" / "demo" / "app_schema.sql").read_text(encoding="utf-8"))
        cur.execute("truncate app.job_postings, app.events")
        for table, frame in (("app.job_postings", postings), ("app.events", events)):
            buf = io.StringIO()
            frame.to_csv(buf, index=False, header=False)
            buf.seek(0)
            cur.copy_expert(f"copy {table} ({', '.join(frame.columns)}) from stdin with (format csv)", buf)
        cur.execute("analyze app.job_postings; analyze app.events")
    conn.close()
    return job_id


def published(url: str) -> pd.DataFrame:
    import psycopg2

    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("select job_id, category from predictions.job_category")
            return pd.DataFrame(cur.fetchall(), columns=["job_id", "category"])
    finally:
        conn.close()


def run_board(board: Board, data_dir: Path, cluster) -> dict:
    import psycopg2
    from sklearn.metrics import f1_score

    df = pd.read_csv(data_dir / board.file)
    tr, te = split(df)
    t0 = time.perf_counter()
    base_acc, base_f1 = baseline(board, df, tr, te)
    base_s = time.perf_counter() - t0

    home = ROOT / ".jobcast" / "bench" / "real_data" / board.name
    home.mkdir(parents=True, exist_ok=True)
    dbname = f"bench_real_{board.name}"
    admin = psycopg2.connect(cluster.url("postgres"))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'drop database if exists "{dbname}" with (force)')
        cur.execute(f'create database "{dbname}"')
    admin.close()
    url = cluster.url(dbname)
    (home / "params.yaml").write_text(PARAMS, encoding="utf-8")
    env = {**os.environ, "JOBCAST_DATABASE_URL": url, "JOBCAST_PARAMS_OVERRIDE": str(home / "params.yaml"),
           **{f"JOBCAST_{k}_DIR": str(home / k.lower()) for k in ("DATA", "MODELS", "REPORTS")}}
    for sub in ("data", "models", "reports"):
        subprocess.run(["rm", "-rf", str(home / sub)], check=True)
    jobcast = [sys.executable, "-m", "jobcast.cli"]
    subprocess.run([*jobcast, "db", "migrate"], env=env, check=True, cwd=ROOT, capture_output=True)
    job_id = load_board(url, board, df, tr)
    t0 = time.perf_counter()
    log = home / "run.log"
    with log.open("w") as fh:
        proc = subprocess.run([*jobcast, "run", "--date", DATE.isoformat(), "--tasks", "category", "--train"],
                              env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
    run_s = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{board.name}: `jobcast run` failed with exit {proc.returncode}; see {log}")
    pred = published(url).set_index("job_id")["category"]
    y = df[board.label].astype(str).to_numpy()[te]
    got = pred.reindex(job_id[te]).astype(str).to_numpy()
    meta = json.loads(next((home / "models" / "category").glob("*/metadata.json")).read_text())
    return {"board": board.name, "label": board.label, "classes": int(df[board.label].nunique()), "train_rows": int(len(tr)),
            "test_rows": int(len(te)), "accuracy": float(np.mean(got == y)),
            "macro_f1": float(f1_score(y, got, average="macro", zero_division=0)),
            "baseline_accuracy": base_acc, "baseline_macro_f1": base_f1, "goal": board.goal,
            "final_model": meta.get("final") or f"booster x {meta.get('blend', {}).get('booster_weight', 1.0)} + text", "run_seconds": round(run_s, 1), "baseline_seconds": round(base_s, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--only", nargs="*", choices=[b.name for b in BOARDS])
    ap.add_argument("--json", type=Path, default=ROOT / "metrics" / "real_data.json")
    args = ap.parse_args()
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    from jobcast.config import Settings
    from jobcast.db.local import cluster_for

    settings = Settings.load(ROOT)
    if settings.database_url:
        raise SystemExit("bench/real_data.py creates its own databases on the project-local PostgreSQL; unset JOBCAST_DATABASE_URL")
    cluster = cluster_for(settings)
    cluster.start()
    rows = [run_board(b, args.data, cluster) for b in BOARDS if not args.only or b.name in args.only]
    print("| board | classes | test rows | jobcast accuracy | baseline accuracy | diff | goal | jobcast macro-F1 | baseline macro-F1 | final model | run s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        goal = f">= {r['goal']:.2f} {'met' if r['accuracy'] >= r['goal'] else 'MISSED'}" if r["goal"] else ""
        print(f"| {r['board']} ({r['label']}) | {r['classes']} | {r['test_rows']} | {r['accuracy']:.4f} | {r['baseline_accuracy']:.4f} | "
              f"{100 * (r['accuracy'] - r['baseline_accuracy']):+.1f} pt | {goal} | {r['macro_f1']:.4f} | {r['baseline_macro_f1']:.4f} | "
              f"{r['final_model']} | {r['run_seconds']} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({r["board"]: {k: v for k, v in r.items() if isinstance(v, (int, float)) and v is not None}
                                     for r in rows}, indent=2), encoding="utf-8")
    print(f"metrics: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
