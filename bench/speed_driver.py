"""In-process timings for bench/speed_vs_commit.py, run once per tree (PYTHONPATH picks the tree's code).

    python bench/speed_driver.py features DATE DAYS   # extract each day (untimed), then time features per day
    python bench/speed_driver.py score DATE ROUNDS     # warm Spark session, then time score per task and round

Prints one JSON line of timings. Only APIs both trees share: RunContext, Settings, jobs.<step>.run.
"""

import datetime as dt
import json
import sys
import time

from jobcast.config import Settings
from jobcast.context import RunContext, parse_date

from jobs import extract, features, score


def main() -> None:
    what, date = sys.argv[1], parse_date(sys.argv[2])
    settings = Settings.load()
    out = []
    if what == "features":
        days = [date - dt.timedelta(days=i) for i in reversed(range(int(sys.argv[3])))]
        ctxs = [RunContext(logical_date=d, settings=settings, run_id="bench") for d in days]
        for ctx in ctxs:
            extract.run(ctx)
        for ctx in ctxs:
            t0 = time.perf_counter()
            res = features.run(ctx, force=True)  # built, not reused: a day's new and edited texts are featurised
            out.append({"day": ctx.ds, "rows": res.rows, "seconds": time.perf_counter() - t0})
    else:
        ctx = RunContext(logical_date=date, settings=settings, run_id="bench")
        ctx.spark().range(1000).count()
        import inspect

        full = {"full": True} if "full" in inspect.signature(score.run).parameters else {}  # no carried rows: time the work
        for rnd in range(int(sys.argv[3])):
            for task in ("salary", "category", "cvr"):
                t0 = time.perf_counter()
                res = score.run(ctx, task=task, **full)
                out.append({"task": task, "round": rnd, "rows": res.rows, "seconds": time.perf_counter() - t0})
    print("TIMINGS " + json.dumps(out))


if __name__ == "__main__":
    main()
