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


def file_digests(path: Path) -> dict[str, str]:
    """sha256 of every file a version holds except its metadata: recorded at training, checked before loading
    (LightGBM aborts the whole process on a truncated model file instead of raising)."""
    import hashlib

    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(path.iterdir())
            if f.is_file() and f.name != METADATA}


def verify_files(path: Path) -> None:
    """Refuse a version whose files differ from the digests recorded when it was trained (damaged, truncated,
    half copied). Versions from before the digests were recorded are not checked."""
    meta = path / METADATA
    recorded = json.loads(meta.read_text(encoding="utf-8")).get("files") if meta.is_file() else None
    if not recorded:
        return
    actual = file_digests(path)
    bad = sorted(n for n, h in recorded.items() if actual.get(n) != h)
    if bad:
        raise ModelError(f"{path / bad[0]}: model version {path.name} is damaged ({', '.join(bad)} "
                         f"{'missing or ' if any(n not in actual for n in bad) else ''}changed since training); "
                         "score with another version (--model-version) or retrain")


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
    """The git commit of the code (12 hex digits, "-dirty" with uncommitted changes to tracked files), or
    JOBCAST_CODE_VERSION when set (an image has no .git: its build sets it), or "unknown"."""
    if os.environ.get("JOBCAST_CODE_VERSION"):
        return os.environ["JOBCAST_CODE_VERSION"]
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
