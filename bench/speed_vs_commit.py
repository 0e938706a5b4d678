"""Features and scoring speed of this working tree against another commit, back to back on one machine.

    .venv/bin/python bench/speed_vs_commit.py [--base fb76bc5] [--postings 40000] [--days 30] [--window 6] [--rounds 2]

Both trees run the same steps on the same generated board (one database on the project-local PostgreSQL,
separate data/models dirs under .jobcast/bench/speed/): once, untimed, the window's raw snapshots and
features and `jobcast train` for the three tasks (a short window, as tests/params-small.yaml); then, timed
in rounds that alternate the trees (so the machine's noise falls on both), bench/speed_driver.py in one
process per tree: the features step for each day of the window, built (--force), each day reusing the day
before's text terms as a daily run does (the first day, which starts the Spark session and featurises every
text, is shown on a line of its own), and the score step of each task twice on a warm session. The base commit is checked
out with `git worktree` and run with the same venv (PYTHONPATH puts its src/ and jobs/ first).
Reported: medians, per day and per posting, and the ratio this tree / base.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
TASKS = ("salary", "category", "cvr")


def worktree(base: str) -> Path:
    path = ROOT / ".jobcast" / "bench" / "speed" / f"tree-{base}"
    if not (path / "src").is_dir():
        subprocess.run(["git", "worktree", "add", "--detach", "--force", str(path), base], cwd=ROOT, check=True,
                       capture_output=True)
    return path


def jobcast(tree: Path, home: Path, url: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCAST_")}
    env.update(JOBCAST_DATABASE_URL=url, JOBCAST_HOME=str(tree), JOBCAST_PARAMS_OVERRIDE=str(home.parent / "params.yaml"),
               PYTHONPATH=f"{tree / 'src'}{os.pathsep}{tree}", GX_ANALYTICS_ENABLED="False",
               **{f"JOBCAST_{k}_DIR": str(home / k.lower()) for k in ("DATA", "MODELS", "REPORTS", "STATE")})
    cmd = [sys.executable, str(ROOT / "bench" / "speed_driver.py"), *args[1:]] if args[0] == "__driver__" \
        else [sys.executable, "-m", "jobcast.cli", *args]
    proc = subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{tree.name}: jobcast {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stderr + proc.stdout


def timings(tree: Path, home: Path, url: str, *args: str) -> list[dict]:
    out = jobcast(tree, home, url, "__driver__", *args)
    return json.loads(out.split("TIMINGS ", 1)[1].splitlines()[0])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="fb76bc5")
    ap.add_argument("--postings", type=int, default=40000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--window", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    from jobcast.config import Settings
    from jobcast.db.local import cluster_for

    settings = Settings.load(ROOT)
    cluster = cluster_for(settings)
    cluster.start()
    admin = psycopg2.connect(cluster.url("postgres"))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute('drop database if exists "bench_speed" with (force)')
        cur.execute('create database "bench_speed"')
    admin.close()
    url = cluster.url("bench_speed")
    bench = ROOT / ".jobcast" / "bench" / "speed"
    bench.mkdir(parents=True, exist_ok=True)
    (bench / "params.yaml").write_text(f"generate: {{postings: {args.postings}, days: {args.days}, start_date: '2026-09-01'}}\n"
                                       f"train: {{window_days: {args.window}, holdout_days: 2}}\n", encoding="utf-8")
    date = f"2026-09-{args.days:02d}"
    trees = {"base": worktree(args.base), "this": ROOT}
    homes = {name: bench / name for name in trees}
    for name, tree in trees.items():
        subprocess.run(["rm", "-rf", str(homes[name])], check=True)
    jobcast(ROOT, homes["this"], url, "db", "migrate")
    jobcast(ROOT, homes["this"], url, "generate")
    feats: dict[str, list[dict]] = {n: [] for n in trees}
    first: dict[str, list[dict]] = {n: [] for n in trees}  # every text featurised (no previous day), with the session start
    score: dict[str, list[dict]] = {n: [] for n in trees}
    for name, tree in trees.items():  # training is not what we compare: once per tree, untimed
        timings(tree, homes[name], url, "features", date, str(args.window))
        for task in TASKS:
            jobcast(tree, homes[name], url, "train", "--task", task, "--date", date)
    for rnd in range(args.rounds):
        for name, tree in (trees.items() if rnd % 2 == 0 else reversed(list(trees.items()))):
            days = timings(tree, homes[name], url, "features", date, str(args.window))
            first[name].append(days[0])
            feats[name] += days[1:]  # day 1: session start
            score[name] += timings(tree, homes[name], url, "score", date, "2")
    rows = feats["this"][-1]["rows"]
    print(f"\nbase = {args.base}, this = working tree; {args.postings} postings generated, {rows} open on {date}; "
          f"{args.rounds} rounds alternating the trees; medians over warm runs\n")
    print("| step | base | this | this / base |")
    print("|---|---|---|---|")

    def line(label: str, base: list[float], this: list[float], scale: float = 1.0, fmt: str = ".2f") -> None:
        b, t = statistics.median(base) * scale, statistics.median(this) * scale
        print(f"| {label} | {b:{fmt}} | {t:{fmt}} | {t / b:.2f} |")

    line("features, first day (every text, session start), s", [r["seconds"] for r in first["base"]],
         [r["seconds"] for r in first["this"]])
    line("features, s per day", [r["seconds"] for r in feats["base"]], [r["seconds"] for r in feats["this"]])
    line("features, us per posting", [r["seconds"] / r["rows"] for r in feats["base"]],
         [r["seconds"] / r["rows"] for r in feats["this"]], 1e6, ".0f")
    for task in TASKS:
        line(f"score {task}, us per posting", [r["seconds"] / r["rows"] for r in score["base"] if r["task"] == task],
             [r["seconds"] / r["rows"] for r in score["this"] if r["task"] == task], 1e6, ".0f")
    return 0


if __name__ == "__main__":
    sys.exit(main())
