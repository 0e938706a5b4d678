"""Scale bench: the daily path and the training path on generated boards of 100k, 300k and 1M open postings.

    .venv/bin/python bench/scale.py [--sizes 100k 300k 1m] [--paths train daily] [--table] [--fresh]

Per size, in .jobcast/bench/scale/<size> with its own PostgreSQL on a free port (kept between runs):
- generate: a board of postings = open x 3.2 over 60 days (a posting stays open 25 days on average, so about
  0.31 of them are open on a late day), events in proportion (about 1.6 views per open posting per day),
  streamed to COPY part by part (`jobcast generate --no-truth`, bounded memory);
- train path: `jobcast window` (28 days of extract + features), then `jobcast train` for each task, on the
  day before the last;
- daily path: `jobcast run` (extract → raw gate → features → features gate → per task: score → validate →
  publish), one process, one Spark session, as the scheduler would run it, on two days: the training day
  ("first": the first batches, a full rescore) and then the last day ("daily": the steady state: one day of
  events read, incremental rescoring); then each task's `jobcast score --full` again with and without
  reasons (params score.reasons), for their cost.

Every step is a real CLI process. A sampler reads the RSS of the process tree every 0.2 s: the Python driver,
the Spark JVM, and the Python workers: Spark's, and training's text-model fit workers (the largest one and all
of them together). `jobcast run`'s steps are told apart by the summary line each prints when it ends.

Prints one table: per size, path and step: rows, seconds, postings/s (open postings of the day), time per
posting relative to the smallest size in the table, and peak RSS. Results are kept per size in
bench/results/scale/<size>.json (committed with the code they measured: each row records the commit), so sizes
can be run one at a time, on different days and machines, and `--table` prints them all.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / ".jobcast" / "bench" / "scale"
RESULTS = ROOT / "bench" / "results" / "scale"
JOBCAST = str(Path(sys.executable).parent / "jobcast")
START = dt.date(2026, 9, 1)
DAYS = 60
OPEN_SHARE = 0.3125  # open postings on a late day / postings generated (see the docstring)
TASKS = ("salary", "category", "cvr", "job_tags")  # the declared tasks: `jobcast run` would train any without a champion
SIZES = {"100k": 100_000, "300k": 300_000, "1m": 1_000_000}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(home: Path) -> dict:
    env = {
        **os.environ, "JOBCAST_HOME": str(ROOT),
        "JOBCAST_DATA_DIR": str(home / "data"), "JOBCAST_MODELS_DIR": str(home / "models"),
        "JOBCAST_REPORTS_DIR": str(home / "reports"), "JOBCAST_STATE_DIR": str(home / "state"),
        "JOBCAST_DVC_REMOTE": str(home / "dvc-remote"),
        "GX_ANALYTICS_ENABLED": "False", "DVC_NO_ANALYTICS": "1",
    }
    env.pop("JOBCAST_PARAMS_OVERRIDE", None)  # the embedded defaults, as a user runs them
    port = home / "port"
    if not port.exists():
        home.mkdir(parents=True, exist_ok=True)
        port.write_text(str(free_port()))
    env["JOBCAST_PG_PORT"] = port.read_text().strip()
    return env


class Sampler:
    """Peak RSS of a process tree, by role, with a timestamp per sample so a step's share can be picked out."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        self.root = psutil.Process(pid)
        self.every = every
        self.samples: list[tuple[float, int, int, int, int]] = []  # t, driver, jvm, worker max, workers sum
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
                driver = jvm = wmax = wsum = 0
                for p in procs:
                    try:
                        rss, name = p.memory_info().rss, p.name()
                    except psutil.Error:
                        continue
                    if p.pid == self.root.pid:
                        driver = rss
                    elif name == "java":
                        jvm = max(jvm, rss)
                    elif name.startswith("python"):
                        wmax, wsum = max(wmax, rss), wsum + rss
                self.samples.append((time.monotonic(), driver, jvm, wmax, wsum))
            except psutil.Error:
                pass
            self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def peaks(self, t0: float = 0.0, t1: float = float("inf")) -> dict:
        inside = [s for s in self.samples if t0 <= s[0] <= t1] or self.samples[-1:] or [(0, 0, 0, 0, 0)]
        return {k: max(s[i] for s in inside) for i, k in ((1, "driver"), (2, "jvm"), (3, "worker"), (4, "workers"))}


SUMMARY = re.compile(r"^(\w+)\s+(?:task=(\S+)\s+)?date=\S+\s+rows=(\d+)\s+([\d.]+)s")  # StepResult.summary()


def run_cli(env: dict, argv: list[str], log: Path) -> tuple[float, list[dict], Sampler]:
    """Run `jobcast argv`, sampling RSS; returns wall seconds, the step summaries (with arrival times) and the sampler."""
    t0 = time.monotonic()
    proc = subprocess.Popen([JOBCAST, *argv], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace")
    sampler = Sampler(proc.pid)
    steps = []
    with log.open("a") as out:
        out.write(f"$ jobcast {' '.join(argv)}\n")
        for line in proc.stdout:
            out.write(line)
            m = SUMMARY.match(line.strip())
            if m:
                steps.append({"step": m.group(1), "task": m.group(2), "rows": int(m.group(3)), "seconds": float(m.group(4)),
                              "at": time.monotonic()})
    rc = proc.wait()
    sampler.stop()
    if rc != 0:
        sys.exit(f"`jobcast {' '.join(argv)}` failed (exit {rc}); see {log}")
    return time.monotonic() - t0, steps, sampler


def gib(n: int) -> str:
    return f"{n / 2**30:.2f}"


def commit() -> str:
    """The code measured: HEAD, marked dirty when the work tree differs from it."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "src", "bench", ":!bench/results", "params.yaml"], cwd=ROOT).returncode
    return f"{head}{'+dirty' if dirty else ''}" or "unknown"


def bench_size(label: str, paths: list[str], fresh: bool, tasks: tuple[str, ...] = TASKS,
               reasons_cost: bool = True) -> dict:
    home = BASE / label
    if fresh:
        shutil.rmtree(home, ignore_errors=True)
    env = env_for(home)
    log = home / "bench.log"
    RESULTS.mkdir(parents=True, exist_ok=True)
    results_file = RESULTS / f"{label}.json"
    code = commit()
    results = json.loads(results_file.read_text()) if results_file.exists() else {"size": label, "rows": []}
    open_target = SIZES[label]
    postings = round(open_target / OPEN_SHARE)
    train_day, day = START + dt.timedelta(days=DAYS - 2), START + dt.timedelta(days=DAYS - 1)
    subprocess.run([JOBCAST, "db", "start"], env=env, cwd=ROOT, check=True, capture_output=True)
    subprocess.run([JOBCAST, "db", "migrate"], env=env, cwd=ROOT, check=True, capture_output=True)

    def record(path: str, step: str, rows: int, seconds: float, peaks: dict) -> None:
        results["rows"] = [r for r in results["rows"] if (r["path"], r["step"]) != (path, step)]
        results["rows"].append({"path": path, "step": step, "rows": rows, "seconds": round(seconds, 1), **peaks,
                                "commit": code, "day": dt.date.today().isoformat()})
        results_file.write_text(json.dumps(results, indent=1))
        print(f"{label:>5} {path:<6} {step:<22} rows={rows:<9} {seconds:8.1f}s  driver {gib(peaks['driver'])} GiB  "
              f"jvm {gib(peaks['jvm'])} GiB  worker {gib(peaks['worker'])} GiB", flush=True)

    if not (home / "generated").exists():
        secs, _, s = run_cli(env, ["generate", "--postings", str(postings), "--days", str(DAYS), "--seed", "7",
                                   "--start-date", START.isoformat(), "--no-truth"], log)
        record("setup", "generate", postings, secs, s.peaks())
        (home / "generated").write_text("ok")
    open_rows = None
    if "train" in paths:
        feats = home / "data" / "features"
        before = set(feats.iterdir()) if feats.exists() else set()
        secs, steps, s = run_cli(env, ["window", "--date", train_day.isoformat()], log)
        built = len(set(feats.iterdir()) - before) if feats.exists() else 0
        if built or not before:  # a rerun that built nothing keeps the figure of the run that built the window
            record("train", f"window ({built} days built)", steps[-1]["rows"] if steps else 0, secs, s.peaks())
        for task in tasks:
            secs, steps, s = run_cli(env, ["train", "--task", task, "--date", train_day.isoformat()], log)
            record("train", f"train {task}", steps[-1]["rows"] if steps else 0, secs, s.peaks())
    if "daily" in paths:
        # Two days, as a scheduler runs them. The training day's run publishes the first batches: a full
        # rescore, its snapshot and features already built by the window. Then the last day from scratch (a
        # rerun would reuse its snapshot and features): its extract reads one day of events and links the
        # rest, the raw gate checks that day, and each task rescores only changed and new postings.
        prev_events = home / "data" / "raw" / "events" / f"dt={train_day.isoformat()}"
        if not (prev_events / "_manifest.json").is_file() or "days" not in json.loads((prev_events / "_manifest.json").read_text()):
            run_cli(env, ["extract", "--date", train_day.isoformat(), "--refresh"], log)  # a board from before files per day
        for sub in ("raw/job_postings", "raw/events", "raw/job_posting_tags", "features"):
            shutil.rmtree(home / "data" / sub / f"dt={day.isoformat()}", ignore_errors=True)
        for path, when, extra in (("first", train_day, ["--full"]), ("daily", day, [])):
            secs, steps, s = run_cli(env, ["run", "--date", when.isoformat(), *extra], log)
            t_prev = s.samples[0][0] if s.samples else 0.0
            for st in steps:
                name = f"{st['step']} {st['task'] or ''}".strip()
                if st["step"] == "extract" and path == "daily":
                    open_rows = st["rows"]
                record(path, name, st["rows"], st["seconds"], s.peaks(t_prev, st["at"]))
                t_prev = st["at"]
            record(path, "whole run (wall)", steps[0]["rows"] if steps else 0, secs, s.peaks())
        # What the reasons cost at this size: each task's scoring again, full, with and without them (the
        # budget is 2x), as `jobcast score` processes of their own. Publishes nothing.
        plain = home / "no-reasons.yaml"
        plain.write_text("score:\n  reasons: false\n")
        for task in tasks if reasons_cost else ():
            for label_, extra in (("with reasons", {}), ("without reasons", {"JOBCAST_PARAMS_OVERRIDE": str(plain)})):
                secs, steps, s = run_cli({**env, **extra}, ["score", "--task", task, "--date", day.isoformat(), "--full"], log)
                record("daily", f"score {task} {label_}", steps[-1]["rows"] if steps else 0,
                       steps[-1]["seconds"] if steps else secs, s.peaks())
    results["open_postings"] = open_rows or results.get("open_postings")
    results_file.write_text(json.dumps(results, indent=1))
    subprocess.run([JOBCAST, "db", "stop"], env=env, cwd=ROOT, capture_output=True)
    return results


def table(labels: list[str]) -> None:
    found = {}
    for label in labels:
        f = RESULTS / f"{label}.json"
        if f.exists():
            found[label] = json.loads(f.read_text())
    if not found:
        print("no results yet")
        return
    base_label = next(iter(found))
    base = {(r["path"], r["step"]): r["seconds"] / max(found[base_label].get("open_postings") or 1, 1)
            for r in found[base_label]["rows"]}
    print(f"| size (open postings) | path | step | rows | seconds | open postings/s | s per posting vs {base_label} "
          "| peak RSS GiB: driver / JVM / largest worker / all workers |")
    print("|---|---|---|---|---|---|---|---|")
    for label, res in found.items():
        n = res.get("open_postings") or 0
        for r in res["rows"]:
            per = r["seconds"] / max(n, 1)
            # A step's summary line has 0.1 s resolution: one that printed 0.0 s took under 0.05 s, at which
            # point a ratio says nothing (and one over a 0.0 s base is undefined).
            rel = f"{per / base[(r['path'], r['step'])]:.2f}" if base.get((r["path"], r["step"])) and r["seconds"] else "–"
            rate = f"{n / r['seconds']:,.0f}" if r["seconds"] > 0 and r["path"] != "setup" else "-"
            secs = f"{r['seconds']:,.1f}" if r["seconds"] else "< 0.05"
            print(f"| {label} ({n:,}) | {r['path']} | {r['step']} | {r['rows']:,} | {secs} | {rate} | "
                  f"{rel} | {gib(r['driver'])} / {gib(r['jvm'])} / {gib(r['worker'])} / {gib(r['workers'])} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="*", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--paths", nargs="*", default=["train", "daily"], choices=["train", "daily"])
    ap.add_argument("--tasks", nargs="*", default=list(TASKS), choices=list(TASKS), help="tasks the train path trains")
    ap.add_argument("--table", action="store_true", help="print the table of the results kept so far, run nothing")
    ap.add_argument("--fresh", action="store_true", help="regenerate the boards (drops their DB, data and models)")
    ap.add_argument("--no-reasons-cost", action="store_true",
                    help="skip the daily path's last part: each task's full rescore with and without reasons")
    args = ap.parse_args()
    if not args.table:
        for label in args.sizes:
            bench_size(label, args.paths, args.fresh, tuple(args.tasks), reasons_cost=not args.no_reasons_cost)
    table(args.sizes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
