"""run: the whole daily path for one logical date, in order, with one summary line per step."""

from __future__ import annotations

import logging
from typing import Callable

from jobcast import tasks as declarations
from jobcast.context import RunContext, StepResult
from jobcast.errors import call_with_retries
from jobcast.models import registry

from jobs import extract, features, publish, score, train, validate, window

log = logging.getLogger(__name__)


def release_memory() -> None:
    """Hands the memory a finished step freed back to the OS (Python's garbage, Arrow's pool, glibc's heap). One
    process runs every step here, where an Airflow task runs one: on the 300k bench board the driver's peak
    grew from salary's validation to job_tags' (1.5 -> 2.6 GiB), while job_tags' validation in a process of its
    own peaks at 1.1 GiB."""
    import ctypes
    import gc

    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def run(ctx: RunContext, *, tasks: tuple[str, ...] | None = None, retrain: bool = False, force: bool = False, full: bool = False,
        refresh: bool = False, retries: int = 0, retry_delay_s: float = 5.0, echo: Callable[[str], None] = print) -> list[StepResult]:
    """Each step is retried on its own (up to `retries` times, backoff from `retry_delay_s`) when it fails with
    a transient error; every step is idempotent per date, so a retry redoes only that step."""
    tasks = declarations.names() if tasks is None else tuple(declarations.get(t).name for t in tasks)
    results: list[StepResult] = []

    def step(fn: Callable[..., StepResult], **kwargs) -> StepResult:
        what = f"{fn.__module__.rsplit('.', 1)[-1]} {kwargs.get('task') or kwargs.get('layer') or ''}".strip()
        result = call_with_retries(lambda: fn(ctx, **kwargs), retries=retries, delay_s=retry_delay_s, what=what)
        release_memory()
        results.append(result)
        echo(result.summary())
        return result

    step(extract.run, refresh=refresh)
    step(validate.run, layer="raw")
    step(features.run)
    step(validate.run, layer="features")
    # A task the board gives no labels to (job_tags on a board that ticks no tags) is not trained: scored with its
    # champion if it has one, skipped if not; the other tasks go on.
    to_train, scored = [], []
    for t in tasks:
        no_train, no_score = (declarations.get(t).skipped(ctx, s) for s in ("train", "score"))
        if no_score:
            echo(f"skipped (no champion): {no_score}")
            continue
        scored.append(t)
        if no_train:
            echo(f"not retrained: {no_train}")
        elif retrain or registry.champion(ctx.settings, t) is None:
            to_train.append(t)
    tasks = tuple(scored)
    if to_train:
        step(window.run)
    for task in tasks:
        if task in to_train:
            step(train.run, task=task)
        step(score.run, task=task, full=full)
        step(validate.run, task=task)
        step(publish.run, task=task, force=force)
    return results
