"""run: the whole daily path for one logical date, in order, with one summary line per step."""

from __future__ import annotations

import logging
from typing import Callable

from jobcast import TASKS
from jobcast.context import RunContext, StepResult
from jobcast.models import registry

from jobs import extract, features, publish, score, train, validate, window

log = logging.getLogger(__name__)


def run(ctx: RunContext, *, tasks: tuple[str, ...] = TASKS, retrain: bool = False, force: bool = False, full: bool = False,
        echo: Callable[[str], None] = print) -> list[StepResult]:
    results: list[StepResult] = []

    def step(result: StepResult) -> StepResult:
        results.append(result)
        echo(result.summary())
        return result

    step(extract.run(ctx))
    step(validate.run(ctx, layer="raw"))
    step(features.run(ctx))
    step(validate.run(ctx, layer="features"))
    to_train = [t for t in tasks if retrain or registry.champion(ctx.settings, t) is None]
    if to_train:
        step(window.run(ctx))
    for task in tasks:
        if task in to_train:
            step(train.run(ctx, task=task))
        step(score.run(ctx, task=task, full=full))
        step(validate.run(ctx, task=task))
        step(publish.run(ctx, task=task, force=force))
    return results
