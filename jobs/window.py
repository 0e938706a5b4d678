"""window: make sure every day of a training window has its raw snapshot and features (extract + features).

Days already built are kept (each day's partitions are idempotent outputs of that day's run), so a daily
training run only adds the newest day. Features whose recipe changed (the snapshot, FEATURES_VERSION, or
the params they read: jobs/features.recipe) or whose files changed are rebuilt; --force rebuilds every day's
features. Raw snapshots are never
re-taken (jobs/extract.py: they are the day as it was); a day that has none is extracted now and recorded
as reconstructed; `refresh=True` (--refresh) re-takes every day's snapshot on purpose.

The days to build are built together, in one Spark job per features.max_days_per_job days (jobs/features.build):
a posting open most of the window has its text featurised once, not once a day.
"""

from __future__ import annotations

import datetime as dt
import logging

from jobcast.context import RunContext, StepResult, timed_step
from jobcast.errors import ConfigError

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
        to_build, modes = [], {}
        for i in reversed(range(days)):
            day = RunContext(ctx.logical_date - dt.timedelta(days=i), settings, run_id=ctx.run_id)
            have_raw = extract.snapshot(settings, day.ds) is not None
            have_features = features.reusable(settings, day.ds) is not None
            if refresh or not have_raw:
                extract.run(day, refresh=refresh)
            if force or refresh or not have_raw or not have_features:
                to_build.append(day.logical_date)
            mode = extract.snapshot(settings, day.ds)["job_postings"].get("mode", "unknown")
            modes[mode] = modes.get(mode, 0) + 1
        # Every missing day's features in one Spark job (features.build), or a few for a long window.
        per_job = settings.param_number("features.max_days_per_job", int)
        if per_job < 1:
            raise ConfigError(f"params.yaml features.max_days_per_job={per_job}: expected at least 1")
        for k in range(0, len(to_build), per_job):
            chunk = to_build[k:k + per_job]
            built = features.build(ctx, chunk)
            log.info("window: features of %d days built in one job (%s..%s, %d rows)", len(chunk), chunk[0], chunk[-1],
                     sum(m["rows"] for m in built.values()))
        res.rows = days
        res.metrics.update(days=days, built=len(to_build), snapshots=modes)
    return res
