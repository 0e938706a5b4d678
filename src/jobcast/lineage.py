"""What each step read and wrote, as dataset URIs: the lineage Airflow's OpenLineage provider emits per task.

Steps keep the data layout (data/<layer>/<name>/dt=D, models/<task>/<version>), so a step's inputs follow from
its name, task and date, and its outputs are in its StepResult. The URIs are Airflow asset URIs, which the
OpenLineage provider turns into datasets: files as `file:///abs/path` (common-io), tables and views as
`postgres://host:port/database/schema/table` (the postgres provider; OpenLineage names it database.schema.table).

- extract: the source tables it snapshotted (the contract's and the tasks' own) -> raw/<table>/dt=D
- validate raw|features|<task>: the partition it checks -> its verdict file
- features: raw/*/dt=D -> features/dt=D;  window: raw/* and features/* of the window's days
- train: features/dt=D-27..D -> models/<task>/<version> (a promotion is also an Airflow asset event)
- score: features/dt=D and the model version -> predictions/<task>/dt=D
- publish: predictions/<task>/dt=D (and the raw/*/dt=D and model it archives) -> the view predictions.<view>
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from jobcast.config import Settings
from jobcast.sources import SOURCES
from jobcast.storage import partition


def file_uri(path: str | Path) -> str:
    return "file://" + str(Path(path).resolve())


def table_uri(settings: Settings, schema: str, name: str) -> str:
    """postgres://host:port/database/schema/table of the shared DB (the project-local cluster by default)."""
    import psycopg2.extensions

    from jobcast.db.conn import database_url

    dsn = psycopg2.extensions.parse_dsn(database_url(settings))
    return f"postgres://{dsn.get('host', 'localhost')}:{dsn.get('port', 5432)}/{dsn.get('dbname', 'jobcast')}/{schema}/{name}"


def step_lineage(settings: Settings, result: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(inputs, outputs) of a finished step, from its StepResult (as a dict: what XCom carries). window and
    train report the number of days they covered (metrics days / window_days)."""
    step, task, ds = result["step"], result.get("task"), result.get("date")
    data = settings.data_dir
    paths = result.get("paths") or {}
    ids = result.get("ids") or {}
    metrics = result.get("metrics") or {}
    day_raw = [file_uri(partition(data, "raw", t, date=ds)) for t in SOURCES] if ds else []
    features = file_uri(partition(data, "features", date=ds)) if ds else None
    covered = int(metrics.get("days") or metrics.get("window_days") or 0) if step in ("window", "train") else 0
    days = [(dt.date.fromisoformat(ds) - dt.timedelta(days=i)).isoformat() for i in range(covered)]
    inputs: list[str] = []
    outputs: list[str] = [file_uri(p) for k, p in paths.items() if not k.startswith("report_")]
    if step == "extract":  # its outputs are named by the tables they snapshot
        inputs = [table_uri(settings, settings.source_schema, t) for t in paths]
    elif step == "validate":
        subject = {"raw": day_raw, "features": [features]}.get(task)
        inputs = subject if subject is not None else [file_uri(partition(data, "predictions", task, date=ds))]
    elif step == "features":
        inputs = day_raw
    elif step == "window":
        inputs = [file_uri(partition(data, "raw", t, date=d)) for d in days for t in SOURCES]
        outputs += [file_uri(partition(data, "features", date=d)) for d in days]
    elif step == "train":
        inputs = [file_uri(partition(data, "features", date=d)) for d in days]
    elif step == "score":
        inputs = [features, file_uri(settings.models_dir / task / ids["model_version"])]
    elif step == "publish":
        from jobcast.tasks import get

        # It also reads the day's snapshots and the model, to archive them in the DVC remote (jobcast.archive).
        inputs = [file_uri(partition(data, "predictions", task, date=ds)), *day_raw]
        if ids.get("model_version"):
            inputs.append(file_uri(settings.models_dir / task / ids["model_version"]))
        outputs = [table_uri(settings, "predictions", get(task).view)]
    return [u for u in inputs if u], outputs
