"""window: make sure every day of a training window has its raw snapshot and features (extract + features).

Days already built are kept (each day's partitions are idempotent outputs of that day's run), so a daily
training run only adds the newest day. Features whose recipe changed (the snapshot, FEATURES_VERSION, or
the params they read: jobs/features.recipe) or whose files changed are rebuilt; --force rebuilds every day's
features. Raw snapshots are never
re-taken (jobs/extract.py: they are the day as it was); a day that has none is extracted now and recorded
as reconstructed; `refresh=True` (--refresh) re-takes every day's snapshot on purpose.
"""

from __future__ import annotations

import datetime as dt
import logging

from jobcast.context import RunContext, StepResult, timed_step

from jobs import extract, features

log = logging.getLogger(__name__)


def window_days(settings, task: str | None = None) -> int:
    """The longest window the given task (or any task) trains on."""
    train = settings.param("train")
    tasks = [task] if task else [t for t in train if isinstance(train.get(t), dict)]
    return max([int(train["window_days"])] + [int(train[t].get("window_days", 0)) for t in tasks if t in train])


def run(ctx: RunContext, *, days: int | None = None, force: bool = False, refresh: bool = False) -> StepResult:
    settings = ctx.settings
    days = days or window_days(settings)
    with timed_step("window", ctx) as res:
        built, modes = 0, {}
        for i in reversed(range(days)):
            day = RunContext(ctx.logical_date - dt.timedelta(days=i), settings, run_id=ctx.run_id)
            have_raw = extract.snapshot(settings, day.ds) is not None
            have_features = features.reusable(settings, day.ds) is not None
            if refresh or not have_raw:
                extract.run(day, refresh=refresh)
            if force or refresh or not have_raw or not have_features:
                features.run(day, force=True)
                built += 1
            mode = extract.snapshot(settings, day.ds)["job_postings"].get("mode", "unknown")
            modes[mode] = modes.get(mode, 0) + 1
        res.rows = days
        res.metrics.update(days=days, built=built, snapshots=modes)
    return res
