"""Model quality next to the best achievable (the Bayes limit, from the generator's truth) and a simple baseline.

    .venv/bin/python bench/quality.py [--date 2026-10-30] [--json metrics/quality.json] [--plots metrics] [--check]

Uses the champion models, the training window of features (`jobcast window`) and the same time-based holdout
as `jobcast train`, and the generator's truth tables (so it runs on generated data only). Each task's rows
come from its declaration (truth_quality in jobcast/tasks/<task>.py):

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


class Bench:
    """What a task's truth_quality (jobcast.tasks.base.Task) reads: its champion, its training data without caps,
    the window's rows, the generator's truth."""

    def __init__(self, ctx: RunContext, task: str):
        settings = ctx.settings
        self.ctx, self.task = ctx, task
        self.days = int(declared_tasks.get(task).train_params(settings).get("window_days", settings.param("train.window_days")))
        self.holdout_days = int(settings.param("train.holdout_days"))
        self.model = task_models.Predictor.load(task, registry.champion_dir(settings, task))
        self.curves = CURVES

    def training(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        data = train.load_training(self.ctx, self.task, self.days, self.holdout_days)  # no caps: the whole holdout
        return data.train, data.holdout.copy()

    def window(self, labelled: bool = True) -> pd.DataFrame:
        paths = train.window_partitions(self.ctx, self.days)[0]
        return train.window_frame(self.ctx, self.task, paths, self.holdout_days, labelled=labelled).toArrow().to_pandas()

    def truth(self, query: str) -> pd.DataFrame:
        return truth(self.ctx.settings, query)

    def row(self, metric, model, bayes, baseline, gap, goal, n, ok) -> dict:
        return dict(task=self.task, metric=metric, model=model, bayes=bayes, baseline=baseline, gap=gap, goal=goal,
                    n=int(n), ok=bool(ok))


def evaluate(ctx: RunContext) -> list[dict]:
    rows = []
    for name in ctx.settings.params.get("tasks") or declared_tasks.names():  # the tasks dvc.yaml trains
        rows += declared_tasks.get(name).truth_quality(Bench(ctx, name))
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
