"""Filesystem model registry: models/<task>/<version>/ (model, schema, params, metrics) and a champion pointer."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from jobcast.config import Settings
from jobcast.errors import ModelError

METADATA = "metadata.json"
CHAMPION = "champion.json"


def task_dir(settings: Settings, task: str) -> Path:
    return settings.models_dir / task


def version_dir(settings: Settings, task: str, version: str) -> Path:
    return task_dir(settings, task) / version


def read_metadata(path: Path) -> dict[str, Any]:
    meta = path / METADATA
    if not meta.is_file():
        raise ModelError(f"{path}: not a model version (no {METADATA})")
    return json.loads(meta.read_text(encoding="utf-8"))


def list_versions(settings: Settings, task: str) -> list[dict[str, Any]]:
    base = task_dir(settings, task)
    if not base.is_dir():
        return []
    out = [read_metadata(p) for p in sorted(base.iterdir()) if p.is_dir() and (p / METADATA).is_file()]
    return sorted(out, key=lambda m: m.get("created_at", ""))


def champion(settings: Settings, task: str) -> dict[str, Any] | None:
    path = task_dir(settings, task) / CHAMPION
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def champion_dir(settings: Settings, task: str, pinned: str | None = None) -> Path:
    """The model to score with: a pinned version, else the champion. Fails clearly when there is none."""
    if pinned:
        path = version_dir(settings, task, pinned)
        read_metadata(path)
        return path
    champ = champion(settings, task)
    if champ is None:
        raise ModelError(f"{task_dir(settings, task)}: no champion model for {task}; "
                         f"run `jobcast train --task {task} --date <date>` first")
    return version_dir(settings, task, champ["version"])


def set_champion(settings: Settings, task: str, version: str, reason: str) -> None:
    read_metadata(version_dir(settings, task, version))
    path = task_dir(settings, task) / CHAMPION
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"version": version, "promoted_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                               "reason": reason}, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def code_version(root: Path) -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
