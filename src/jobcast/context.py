"""The run context every step receives and the small result every step returns."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

from jobcast.config import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunContext:
    logical_date: dt.date
    settings: Settings
    run_id: str = field(default_factory=lambda: f"manual__{uuid.uuid4().hex[:12]}")

    @property
    def ds(self) -> str:
        return self.logical_date.isoformat()

    def spark(self) -> "SparkSession":
        from jobcast.spark import get_session

        return get_session(self.settings)


@dataclass
class StepResult:
    step: str
    task: str | None
    date: str | None
    rows: int = 0
    seconds: float = 0.0
    paths: dict[str, str] = field(default_factory=dict)
    ids: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: this is what goes into XCom and the CLI's --json output."""
        return json.loads(json.dumps(asdict(self), default=str))

    def summary(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in {**self.ids, **self.metrics}.items() if not isinstance(v, (dict, list)))
        where = " ".join(x for x in (self.task and f"task={self.task}", self.date and f"date={self.date}") if x)
        return f"{self.step:<9} {where:<28} rows={self.rows:<8} {self.seconds:6.1f}s {extra}".rstrip()


def parse_date(value: str | dt.date) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError as exc:
        from jobcast.errors import ConfigError

        raise ConfigError(f"date {value!r}: expected YYYY-MM-DD") from exc


@contextmanager
def timed_step(step: str, ctx: RunContext | None, task: str | None = None) -> Iterator[StepResult]:
    """Logs one start and one end line per step, and fills in the seconds."""
    result = StepResult(step=step, task=task, date=ctx.ds if ctx else None)
    log.info("start %s task=%s date=%s run=%s", step, task, result.date, ctx.run_id if ctx else "-")
    t0 = time.perf_counter()
    yield result
    result.seconds = round(time.perf_counter() - t0, 2)
    log.info("end   %s", result.summary())
