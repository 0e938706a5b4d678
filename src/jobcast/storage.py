"""Partition paths, atomic directory writes and content hashes (the data version of a partition)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

MANIFEST = "_manifest.json"
log = logging.getLogger(__name__)


def partition(base: Path, *parts: str, date: str) -> Path:
    return base.joinpath(*parts, f"dt={date}")


def scratch_path(parent: Path, label: str) -> Path:
    """A new, unused path for a work directory of this process: `parent/.tmp-<label>.<pid>@<host>.<random>`.

    A process killed by SIGKILL or the OOM killer runs no cleanup, and its work directory can hold gigabytes (a
    window's staged features, an extract's CSV files). So each new one first removes those that processes of
    this host left in the same parent and that are no longer running. A directory of a running process, of
    another host (a shared data directory) or not named this way is left alone; a reused pid only delays it.
    """
    parent.mkdir(parents=True, exist_ok=True)
    remove_orphaned_scratch(parent)
    return parent / f".tmp-{label}.{os.getpid()}@{socket.gethostname()}.{uuid.uuid4().hex[:8]}"


def remove_orphaned_scratch(parent: Path) -> list[Path]:
    """Remove the scratch_path directories in `parent` whose process (on this host) has ended; returns them."""
    named = re.compile(rf"^\.tmp-.+\.(\d+)@{re.escape(socket.gethostname())}\.[0-9a-f]{{8}}$")
    removed = []
    for path in parent.glob(".tmp-*"):
        m = named.match(path.name)
        if not m or int(m.group(1)) == os.getpid() or process_alive(int(m.group(1))):
            continue
        log.info("removing %s, left by process %s (no longer running)", path, m.group(1))
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def process_alive(pid: int) -> bool:
    """Whether a process with this pid is running here (a live process of another user counts; a zombie, which
    has exited and waits only for its parent to reap it, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:  # no /proc (not Linux), or it ended in between
        return True


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a sibling temp dir; on success it replaces `final`, so readers and retries never see half a write.

    The replacement is one atomic exchange (renameat2) where the kernel offers it: a process killed at any
    instant leaves either the old directory or the new one at `final`, never neither. Elsewhere it is two
    renames, and a kill between them leaves the old one as `.old-<name>-*`, which the next write puts back.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    if not final.exists():  # a kill between the two renames of the fallback: restore what was there
        leftovers = sorted(final.parent.glob(f".old-{final.name}-*"), key=lambda p: p.stat().st_mtime)
        if leftovers:
            os.replace(leftovers[-1], final)
    tmp = scratch_path(final.parent, final.name)
    try:
        yield tmp
        if final.exists() and _exchange(tmp, final):
            shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old content
            return
        old = None
        if final.exists():
            old = final.parent / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


_SPARK_PART = re.compile(r"^(part-\d+)-.*?(\.[a-z0-9.]+)$")


def tidy_spark_output(directory: Path) -> None:
    """Drop Spark's bookkeeping files and give part files stable names, so identical data hashes identically."""
    for f in list(directory.iterdir()):
        if f.name.endswith(".crc") or f.name == "_SUCCESS":
            f.unlink()
            continue
        m = _SPARK_PART.match(f.name)
        if m:
            f.rename(directory / f"{m.group(1)}{m.group(2)}")


def write_manifest(directory: Path, data: dict[str, Any]) -> None:
    """Describe a partition. Keep it a pure function of the data (no run ids, no clocks): DVC hashes it too."""
    (directory / MANIFEST).write_text(json.dumps(data, indent=2, sort_keys=True, default=str), encoding="utf-8")


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


_DIGESTS: dict[tuple, str] = {}  # file key -> md5: a file linked into many snapshots, or hashed by several
# steps of one process (extract, the raw gate, features, archive), is read once
_DIGEST_CACHE: Path | None = None  # the persistent cache (Settings.load sets it): a file is read once per machine
_RACY_NS = 2_000_000_000  # a file written this recently is not kept: on a coarse clock, a file that replaces it
# on the same inode, with the same size, could have the same key
_UNKEPT: dict[tuple, str] = {}  # digests read while their file was that recent: kept by a later call


def use_digest_cache(path: Path | None) -> None:
    """Keep file digests in this SQLite file across processes (None: in this process only)."""
    global _DIGEST_CACHE
    _DIGEST_CACHE = path


def file_digests(directory: Path) -> dict[str, str]:
    """md5 of each data file, by path relative to the directory (what dir_hash is made of). Files are streamed
    (hashlib.file_digest), so memory stays flat whatever the size of a part file.

    A file's md5 is cached under its (device, inode, size, mtime), as DVC's state keys its hashes: a file
    rewritten in place has a new mtime, a replaced file a new inode. (Not ctime: linking a file into the next
    day's snapshot changes it.) The cache is kept across processes, so a day's 29 days of events, hashed when the
    window built them, are not read again by each later step. It is only an accelerator: when it cannot be
    opened, or is busy past its bounded wait, the files are read.
    """
    files = sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith((".", "_")))
    keyed = []
    for f in files:
        st = f.stat()
        keyed.append((f, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)))
    todo = [key for _, key in keyed if key not in _DIGESTS]
    if todo and _DIGEST_CACHE is not None:
        _DIGESTS.update(_cached(todo))
    computed, out = {}, {}
    for f, key in keyed:
        if key not in _DIGESTS:
            if len(_DIGESTS) > 100_000:  # a long-lived process: bounded
                _DIGESTS.clear()
                _UNKEPT.clear()
            with f.open("rb") as fh:
                _DIGESTS[key] = computed[key] = hashlib.file_digest(fh, "md5").hexdigest()
        out[str(f.relative_to(directory))] = _DIGESTS[key]
    # A file hashed just after it was written (the window hashes each day's snapshot as it takes it) is kept
    # by the next call that sees it settled, even when that call finds it in this process's memory.
    pending = {**{key: _UNKEPT[key] for _, key in keyed if key in _UNKEPT}, **computed}
    if pending and _DIGEST_CACHE is not None:
        _remember(pending)
    return out


_CACHE_ROWS = 500_000  # about 50 MB of SQLite; past it the older half is dropped


def _cache_db():
    import sqlite3

    _DIGEST_CACHE.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(_DIGEST_CACHE, timeout=5)  # a bounded wait for another process's write
    db.execute("CREATE TABLE IF NOT EXISTS digest (dev INTEGER, ino INTEGER, size INTEGER, mtime_ns INTEGER, "
               "md5 TEXT NOT NULL, stored INTEGER NOT NULL, PRIMARY KEY (dev, ino, size, mtime_ns))")
    return db


def _give_up_cache(exc: Exception, then: str) -> None:
    """One warning, then this process reads files without the cache: no second wait on a busy or broken one."""
    global _DIGEST_CACHE
    log.warning("file digest cache %s unusable (%s): %s, and not used again by this process", _DIGEST_CACHE, exc, then)
    _DIGEST_CACHE = None


def _cached(keys: list[tuple]) -> dict[tuple, str]:
    import sqlite3

    try:
        db = _cache_db()
        try:
            found = {}
            for key in keys:
                row = db.execute("SELECT md5 FROM digest WHERE dev=? AND ino=? AND size=? AND mtime_ns=?",
                                 key).fetchone()
                if row:
                    found[key] = row[0]
            return found
        finally:
            db.close()
    except (sqlite3.Error, OSError) as exc:
        _give_up_cache(exc, "reading the files")
        return {}


def _remember(digests: dict[tuple, str]) -> None:
    import sqlite3
    import time

    now = time.time_ns()
    settled = []
    for key, md5 in digests.items():
        if now - key[3] > _RACY_NS:
            settled.append((*key, md5, now))
            _UNKEPT.pop(key, None)
        else:
            _UNKEPT[key] = md5
    if not settled:
        return
    try:
        db = _cache_db()
        try:
            with db:
                db.executemany("INSERT OR REPLACE INTO digest VALUES (?, ?, ?, ?, ?, ?)", settled)
                if db.execute("SELECT count(*) FROM digest").fetchone()[0] > _CACHE_ROWS:
                    db.execute("DELETE FROM digest WHERE rowid IN (SELECT rowid FROM digest ORDER BY stored LIMIT ?)",
                               (_CACHE_ROWS // 2,))
        finally:
            db.close()
    except (sqlite3.Error, OSError) as exc:
        _give_up_cache(exc, "digests not kept")


def dir_hash(directory: Path) -> str:
    """md5 over (relative path, file md5) of the data files: stable across re-runs that produce the same data."""
    h = hashlib.md5()
    for rel, digest in file_digests(directory).items():
        h.update(rel.encode())
        h.update(digest.encode())
    return h.hexdigest()


def check_parquet(directory: Path, rebuild: str) -> None:
    """Every Parquet part of a partition opens (its footer and schema read): a damaged or truncated file is an
    error naming that file and how to rebuild it, not a stack trace from deep inside Spark or Arrow."""
    import pyarrow.parquet as pq

    from jobcast.errors import InputDataError

    for f in sorted(directory.glob("*.parquet")):
        try:
            pq.ParquetFile(f).schema_arrow
        except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ... for a bad file
            raise InputDataError(f"{f}: not a readable Parquet file ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); "
                                 f"expected the output of a completed step; rebuild it: {rebuild}") from exc


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where that is unsupported."""
    import ctypes
    import errno

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def parquet_rows(directory: Path) -> int:
    """Row count from Parquet footers: no scan, no Spark job."""
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in directory.glob("*.parquet"))


def dvc_hash(path: Path) -> str:
    """The md5 DVC records for this file or directory (`<md5>.dir` for a directory, as in dvc.lock), computed
    with DVC's own hashing library, so a model's inputs can be matched against `dvc.lock` or the DVC cache."""
    import tempfile

    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db.local import LocalHashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    fs = LocalFileSystem()
    with tempfile.TemporaryDirectory() as odb_dir:
        _, _, obj = build(LocalHashFileDB(fs, odb_dir), str(path), fs, "md5", dry_run=True)
    return obj.hash_info.value
