"""What a batch was made from, kept in the DVC remote by content hash: the raw snapshots of its date and its
model version. `jobcast publish` archives them before the swap and records their DVC entries (md5 of the
directory manifest, size, file count) in the batch's `lineage`; `jobcast reproduce` pulls them back by those
entries into a scratch directory. Nothing here tracks files in the checkout: each push and pull runs in a
throwaway DVC repository (`dvc init --no-scm`) whose default remote is the project's, so `dvc status` of the
project and git never see these records, and daily runs need no `dvc commit`.

The remote: JOBCAST_DVC_REMOTE (a path or URL) if set, else the project's DVC default remote (.dvc/config:
`dvc-storage/` inside the project, which a team points at shared storage with `dvc remote modify`).

Why DVC's API and not its CLI: each call is one Python call (~1 s) instead of a process (~2 s), and the API
used (Repo.init, Repo.add(to_remote=True), Repo.pull) is what the CLI commands call.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from jobcast.errors import ConfigError, InputDataError, TransientError
from jobcast.storage import dir_hash

log = logging.getLogger(__name__)

ENTRY_KEYS = ("md5", "size", "nfiles", "hash")  # a DVC output entry (the `outs` item of a .dvc file) minus its path


def remote(settings) -> dict[str, Any]:
    """The DVC remote's config section ({"url": ..., other options}); a relative local url is made absolute."""
    url = os.environ.get("JOBCAST_DVC_REMOTE")
    if url:
        return {"url": url if "://" in url else str(Path(url).expanduser().resolve())}
    if not (settings.root / ".dvc").is_dir():
        raise ConfigError(f"{settings.root}: not a DVC project (no .dvc/); set JOBCAST_DVC_REMOTE to where the raw "
                          "snapshots and models of each batch are archived")
    from dvc.repo import Repo

    with Repo(str(settings.root)) as repo:  # the merged config (config, config.local): urls already absolute
        cfg = repo.config
        name = cfg["core"].get("remote")
        if not name or name not in cfg["remote"]:
            raise ConfigError(f"{settings.root / '.dvc' / 'config'}: no default DVC remote; add one with "
                              "`dvc remote add -d NAME URL` or set JOBCAST_DVC_REMOTE")
        return {k: v for k, v in dict(cfg["remote"][name]).items() if isinstance(v, (str, int, float, bool))}


@contextlib.contextmanager
def _scratch_repo(settings, section: dict[str, Any], where: Path | None = None) -> Iterator[Any]:
    """A throwaway no-SCM DVC repo whose default remote is `section` (the project's: credentials included)."""
    from dvc.repo import Repo

    base = where or settings.state_dir / "tmp"
    base.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="dvc-", dir=base)) if where is None else where
    quiet = logging.getLogger("dvc")
    level = quiet.level
    try:
        quiet.setLevel(logging.WARNING)  # "Initialized DVC repository." and its hints, on stdout and in the log
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                repo = Repo.init(str(root), no_scm=True, force=True)
        finally:
            quiet.setLevel(level)
        with repo.config.edit("local") as cfg:  # .dvc/config.local: the section may hold credentials
            cfg["remote"]["archive"] = section
            cfg["core"]["remote"] = "archive"
            cfg["core"]["analytics"] = False
        yield repo
        repo.close()
    finally:
        if where is None:
            shutil.rmtree(root, ignore_errors=True)


def push(settings, src: Path, section: dict[str, Any]) -> dict[str, Any]:
    """Upload a directory to the remote (files already there are skipped); returns its DVC entry."""
    import yaml

    with _scratch_repo(settings, section) as repo:
        out = Path(repo.root_dir) / "item"
        try:
            repo.add(str(src), to_remote=True, out=str(out), remote="archive")
        except Exception as exc:  # DVC's errors are many classes; one line with the remote and the source. An
            # unreachable remote is the likely cause: retried like a lost database connection.
            raise TransientError(f"archiving {src} to the DVC remote {section['url']} failed: {exc}") from exc
        entry = yaml.safe_load(out.with_suffix(".dvc").read_text())["outs"][0]
    return {k: entry[k] for k in ENTRY_KEYS if k in entry}


def pull(settings, entries: dict[str, dict[str, Any]], dest: Path) -> None:
    """Fetch each entry from the remote into dest/<relative path> (a DVC repo is made at dest)."""
    import yaml

    dest.mkdir(parents=True, exist_ok=True)
    section = remote(settings)
    with _scratch_repo(settings, section, where=dest) as repo:
        targets = []
        for rel, entry in entries.items():
            out = dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            dvcfile = out.parent / f"{out.name}.dvc"
            dvcfile.write_text(yaml.safe_dump({"outs": [{**{k: entry[k] for k in ENTRY_KEYS if k in entry}, "path": out.name}]}))
            targets.append(str(dvcfile))
        try:
            repo.pull(targets=targets, remote="archive")
        except Exception as exc:
            raise InputDataError(f"pulling {', '.join(entries)} from the DVC remote {section['url']} failed: {exc}; "
                                 "is this the remote the batch was archived to (JOBCAST_DVC_REMOTE, `dvc remote list`)?") from exc


def _record(settings, section: dict[str, Any], kind: str, key: str, src: Path) -> dict[str, Any]:
    """Push src once: a record (data_dir/archive/<kind>/<key>.json) remembers its DVC entry for as long as src's
    content and the remote are the same, so a retry or the next task of the same day uploads nothing."""
    if not src.is_dir():
        raise InputDataError(f"{src}: missing; the batch names it as an input, so it must be archived before publish")
    rec_path = settings.data_dir / "archive" / kind / f"{key}.json"
    content, url = dir_hash(src), section["url"]
    if rec_path.is_file():
        rec = json.loads(rec_path.read_text())
        if rec.get("content") == content and rec.get("remote") == url:
            return rec["dvc"]
    entry = push(settings, src, section)
    rec_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = rec_path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"content": content, "remote": url, "dvc": entry,
                               "archived_at": dt.datetime.now(dt.timezone.utc).isoformat()}, indent=2))
    os.replace(tmp, rec_path)
    log.info("archived %s to %s (%s)", src, url, entry["md5"])
    return entry


def raw_partitions(settings, ds: str) -> dict[str, Path]:
    """The day's raw snapshot of every source table (what `jobcast features` reads, and the tags)."""
    base = settings.data_dir / "raw"
    return {p.parent.name: p for p in sorted(base.glob(f"*/dt={ds}")) if p.is_dir()}


def archive_inputs(settings, task: str, ds: str, model_version: str) -> dict[str, Any]:
    """Archive the day's raw snapshots and the model version; returns their lineage entries:
    {"remote": url, "raw": {table: entry}, "model": entry} with paths relative to data_dir / models_dir."""
    from jobcast.models import registry

    raw = raw_partitions(settings, ds)
    if not raw:
        raise InputDataError(f"{settings.data_dir / 'raw'}: no snapshot for {ds}; run `jobcast extract --date {ds}` first")
    model_dir = registry.version_dir(settings, task, model_version)
    section = remote(settings)
    return {
        "remote": section["url"],
        "raw": {t: {"path": f"raw/{t}/dt={ds}", **_record(settings, section, f"raw/{t}", f"dt={ds}", p)} for t, p in raw.items()},
        "model": {"path": f"{task}/{model_version}", **_record(settings, section, f"models/{task}", model_version, model_dir)},
    }
