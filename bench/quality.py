"""Model quality next to the best achievable (the Bayes limit, from the generator's truth) and a simple baseline.

    .venv/bin/python bench/quality.py [--date 2026-10-30] [--json metrics/quality.json] [--plots metrics] [--check]

Uses the champion models, the training window of features (`jobcast window`) and the same time-based holdout
as `jobcast train`, and the generator's truth tables (so it runs on generated data only):

- salary: MAE of p50 against the disclosed salaries of the holdout postings; Bayes = the truth (median of
  each posting's salary distribution) as the prediction; p10-p90 coverage (goal 75-85%).
- category: accuracy against the TRUE category of every holdout posting (filed or not); Bayes = the
  generator's bayes_category (the best guess from the posting's content).
- cvr: per-view log-loss of the holdout days' views; Bayes = truth.job_cvr_daily (the expected applies per
  view of the posting on that day).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jobcast.config import Settings  # noqa: E402
from jobcast.context import RunContext, parse_date  # noqa: E402
from jobcast.db.conn import connect  # noqa: E402
from jobcast import tasks as declared_tasks  # noqa: E402
from jobcast.models import registry, task_models  # noqa: E402

from jobs import train  # noqa: E402


CURVES: dict[str, list] = {}  # DVC plots written by --plots


def truth(settings: Settings, query: str) -> pd.DataFrame:
    conn = connect(settings, application_name="jobcast-bench-quality")
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            cols = [d[0] for d in cur.description]
            return pd.DataFrame(cur.fetchall(), columns=cols)
    finally:
        conn.close()


def evaluate(ctx: RunContext) -> list[dict]:
    settings = ctx.settings
    holdout_days = int(settings.param("train.holdout_days"))
    rows = []
    for task in declared_tasks.names():
        params = declared_tasks.get(task).train_params(settings)
        days = int(params.get("window_days", settings.param("train.window_days")))
        model = task_models.Predictor.load(task, registry.champion_dir(settings, task))
        if task == "salary":
            data = train.load_training(ctx, task, days, holdout_days)  # no caps: the whole holdout
            h, tr = data.holdout, data.train
            h = h.merge(truth(settings, "select job_id, salary from truth.job_salary"), on="job_id")
            y, pred = h["salary_label"].to_numpy(float), model.predict(h, num_threads=0)
            m = task_models.salary_metrics(y, pred)
            sigma = __import__("jobcast.generate.core", fromlist=["x"]).SALARY_NOISE_SIGMA
            z = 1.2815515655446004
            bayes = task_models.salary_metrics(y, pd.DataFrame({"salary_p10": h["salary"] * np.exp(-z * sigma),
                                                          "salary_p50": h["salary"], "salary_p90": h["salary"] * np.exp(z * sigma)}))
            base = declared_tasks.get(task).baseline(tr, h)["baseline_mae"]
            rows.append(dict(task=task, metric="MAE of p50 (JPY)", model=m["mae"], bayes=bayes["mae"], baseline=base,
                             gap=m["mae"] / bayes["mae"] - 1, goal="<= +5%", n=len(h), ok=m["mae"] <= 1.05 * bayes["mae"]))
            rows.append(dict(task=task, metric="p10-p90 coverage", model=m["coverage_p10_p90"], bayes=bayes["coverage_p10_p90"],
                             baseline=float("nan"), gap=m["coverage_p10_p90"] - 0.80, goal="0.75-0.85", n=len(h),
                             ok=0.75 <= m["coverage_p10_p90"] <= 0.85))
        elif task == "category":
            # Every holdout posting, filed or not: its true category is in the truth tables.
            paths = train.window_partitions(ctx, days)[0]
            latest = train.window_frame(ctx, task, paths, holdout_days, labelled=False).toArrow().to_pandas()
            is_h = latest[train.HOLDOUT].to_numpy()
            h, tr = latest[is_h], latest[~is_h & latest["category_filed"].notna()]
            h = h.merge(truth(settings, "select job_id, category as true_category, bayes_category from truth.job_category"), on="job_id")
            pred = model.predict(h, num_threads=0)["category"].to_numpy()
            acc = float(np.mean(pred == h["true_category"].to_numpy()))
            bayes = float(np.mean(h["bayes_category"].to_numpy() == h["true_category"].to_numpy()))
            majority = tr["category_filed"].mode().iloc[0]
            base = float(np.mean(h["true_category"].to_numpy() == majority))
            f1 = task_models.category_metrics(h["true_category"].to_numpy(), pred)["macro_f1"]
            rows.append(dict(task=task, metric="accuracy vs true category", model=acc, bayes=bayes, baseline=base,
                             gap=acc - bayes, goal=">= -0.03", n=len(h), ok=acc >= bayes - 0.03))
            rows.append(dict(task=task, metric="macro-F1 vs true category", model=f1, bayes=float("nan"), baseline=float("nan"),
                             gap=float("nan"), goal="", n=len(h), ok=True))
        elif task == "cvr":
            data = train.load_training(ctx, task, days, holdout_days)
            h, tr = data.holdout.copy(), data.train
            t = truth(settings, "select job_id, day, cvr as true_cvr from truth.job_cvr_daily")
            h = h.merge(t, left_on=["job_id", "logical_date"], right_on=["job_id", "day"], how="left")
            if h["true_cvr"].isna().any():
                raise SystemExit(f"cvr: {int(h['true_cvr'].isna().sum())} holdout rows without truth; regenerate the data")
            p = model.predict(h, num_threads=0)["cvr"].to_numpy()
            m = task_models.cvr_metrics(h["views"], h["applies"], p)
            bayes = task_models.cvr_metrics(h["views"], h["applies"], h["true_cvr"].to_numpy())
            base = declared_tasks.get(task).baseline(tr, h)["baseline_logloss"]
            rows.append(dict(task=task, metric="log-loss per view", model=m["logloss"], bayes=bayes["logloss"], baseline=base,
                             gap=m["logloss"] / bayes["logloss"] - 1, goal="<= +3%", n=int(h["views"].sum()),
                             ok=m["logloss"] <= 1.03 * bayes["logloss"]))
            rows.append(dict(task=task, metric="AUC per view", model=m["auc"], bayes=bayes["auc"], baseline=0.5,
                             gap=m["auc"] - bayes["auc"], goal="", n=int(h["views"].sum()), ok=True))
            CURVES["calibration_cvr"] = m["calibration_curve"]
            rows.append(dict(task=task, metric="calibration error", model=m["calibration_error"], bayes=bayes["calibration_error"],
                             baseline=float("nan"), gap=float("nan"), goal="", n=int(h["views"].sum()), ok=True))
    return rows


def fmt(v: float) -> str:
    if v != v:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--date", help="logical date of the training window (default params.yaml run.date)")
    ap.add_argument("--json", help="also write the rows to this file (DVC metrics)")
    ap.add_argument("--plots", help="write the CVR calibration curve to DIR/calibration_cvr.json (DVC plots)")
    ap.add_argument("--check", action="store_true", help="exit 1 unless every goal is met")
    args = ap.parse_args(argv)
    settings = Settings.load()
    ctx = RunContext(parse_date(args.date or settings.param("run.date")), settings)
    rows = evaluate(ctx)
    print(f"quality of the champion models, holdout = last {settings.param('train.holdout_days')} days of the window ending {ctx.ds}")
    print(f"| {'task':<8} | {'metric':<26} | {'model':>10} | {'Bayes limit':>11} | {'baseline':>10} | {'gap':>8} | {'goal':<9} | {'n':>7} | ok |")
    print("|" + "|".join("-" * w for w in (10, 28, 12, 13, 12, 10, 11, 9, 4)) + "|")
    for r in rows:
        gap = "-" if r["gap"] != r["gap"] else (f"{r['gap']:+.1%}" if "%" in r["goal"] else f"{r['gap']:+.4f}")
        print(f"| {r['task']:<8} | {r['metric']:<26} | {fmt(r['model']):>10} | {fmt(r['bayes']):>11} | {fmt(r['baseline']):>10} | "
              f"{gap:>8} | {r['goal']:<9} | {r['n']:>7} | {'yes' if r['ok'] else 'NO':<2} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({f"{r['task']}: {r['metric']}": {k: r[k] for k in ("model", "bayes", "baseline", "ok")}
                                               for r in rows}, indent=2, default=float), encoding="utf-8")
    if args.plots:
        for name, curve in CURVES.items():
            Path(args.plots, f"{name}.json").write_text(json.dumps(curve, indent=2), encoding="utf-8")
    return 1 if args.check and not all(r["ok"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
