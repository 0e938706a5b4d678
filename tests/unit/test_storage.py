"""Work directories a killed process leaves behind (SIGKILL and the OOM killer run no cleanup), and the file
digests that version every partition."""

import hashlib
import os
import socket
import sqlite3
import subprocess
import sys
import time

from jobcast import storage
from jobcast.storage import atomic_dir, scratch_path


def _ended_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_a_new_scratch_dir_removes_those_of_ended_processes_and_keeps_the_others(tmp_path):
    host = socket.gethostname()
    dead = tmp_path / f".tmp-build.{_ended_pid()}@{host}.0123abcd"
    live = tmp_path / f".tmp-build.{os.getppid()}@{host}.89abcdef"  # the process that started pytest: running
    mine = tmp_path / f".tmp-extract-2026-10-30.{os.getpid()}@{host}.00000000"
    elsewhere = tmp_path / f".tmp-build.{_ended_pid()}@not-{host}.0123abcd"  # another host's, on a shared disk
    unnamed = tmp_path / ".tmp-dt=2026-10-30-0123abcd"  # not named by a process: left alone
    kept = [live, mine, elsewhere, unnamed, tmp_path / "dt=2026-10-30"]
    for d in (dead, *kept):
        d.mkdir()
        (d / "part-0.parquet").write_bytes(b"x")

    new = scratch_path(tmp_path, "train-salary")

    assert not dead.exists()
    assert all(d.exists() for d in kept)
    assert not new.exists() and new.parent == tmp_path
    assert new.name.startswith(f".tmp-train-salary.{os.getpid()}@{host}.")


def test_a_process_that_exited_counts_as_ended_even_before_its_parent_reaps_it():
    child = subprocess.Popen([sys.executable, "-c", "pass"])  # not waited for: a zombie once it exits
    try:
        deadline = time.monotonic() + 30
        while open(f"/proc/{child.pid}/stat").read().split(") ", 1)[1][:1] != "Z":
            assert time.monotonic() < deadline, "the child did not exit"
            time.sleep(0.05)
        assert not storage.process_alive(child.pid)
        assert storage.process_alive(os.getpid()) and not storage.process_alive(_ended_pid())
    finally:
        child.wait()


def test_a_partition_write_killed_midway_is_cleaned_up_by_the_next_write_and_the_old_data_stays(tmp_path):
    final = tmp_path / "features" / "dt=2026-10-30"
    with atomic_dir(final) as tmp:
        tmp.mkdir()
        (tmp / "part-0.parquet").write_text("published")
    # A write that was killed: its process is gone, its half-written directory is still there.
    killed = final.parent / f".tmp-{final.name}.{_ended_pid()}@{socket.gethostname()}.deadbeef"
    killed.mkdir()
    (killed / "part-0.parquet").write_text("half")

    with atomic_dir(final) as tmp:
        assert not killed.exists()
        tmp.mkdir()
        (tmp / "part-0.parquet").write_text("new")

    assert (final / "part-0.parquet").read_text() == "new"
    assert [p.name for p in final.parent.iterdir()] == [final.name]


def _digest_cache_in(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "_DIGEST_CACHE", tmp_path / "state" / "file-digests.sqlite")
    monkeypatch.setattr(storage, "_DIGESTS", {})
    monkeypatch.setattr(storage, "_UNKEPT", {})


def _settled(path, payload: bytes, age_s: int = 60):
    path.write_bytes(payload)
    old = time.time() - age_s
    os.utime(path, (old, old))


def test_a_file_hashed_by_one_process_is_not_read_again_by_the_next(tmp_path, monkeypatch):
    _digest_cache_in(tmp_path, monkeypatch)
    part = tmp_path / "dt=2026-10-30"
    part.mkdir()
    _settled(part / "part-0.parquet", b"events of 29 days")
    first = storage.file_digests(part)
    assert first == {"part-0.parquet": hashlib.md5(b"events of 29 days").hexdigest()}

    monkeypatch.setattr(storage, "_DIGESTS", {})  # a new process: only the SQLite cache is shared

    def no_read(*_):
        raise AssertionError("a cached file was read again")

    monkeypatch.setattr(storage.hashlib, "file_digest", no_read)
    assert storage.file_digests(part) == first


def test_a_rewritten_or_replaced_file_is_hashed_again(tmp_path, monkeypatch):
    _digest_cache_in(tmp_path, monkeypatch)
    part = tmp_path / "dt=2026-10-30"
    part.mkdir()
    f = part / "part-0.parquet"
    _settled(f, b"AAAA")
    storage.file_digests(part)
    monkeypatch.setattr(storage, "_DIGESTS", {})

    with f.open("r+b") as fh:  # rewritten in place: same inode and size, a new mtime
        fh.write(b"BBBB")
    assert storage.file_digests(part)["part-0.parquet"] == hashlib.md5(b"BBBB").hexdigest()

    st = f.stat()
    replacement = tmp_path / "new"
    replacement.write_bytes(b"CCCC")
    os.utime(replacement, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime: only the inode differs
    os.replace(replacement, f)
    assert storage.file_digests(part)["part-0.parquet"] == hashlib.md5(b"CCCC").hexdigest()


def test_a_file_written_just_now_is_not_kept(tmp_path, monkeypatch):
    _digest_cache_in(tmp_path, monkeypatch)
    part = tmp_path / "dt=2026-10-30"
    part.mkdir()
    (part / "part-0.parquet").write_bytes(b"fresh")
    storage.file_digests(part)
    with sqlite3.connect(storage._DIGEST_CACHE) as db:
        assert db.execute("SELECT count(*) FROM digest").fetchone()[0] == 0


def test_a_file_hashed_just_after_it_was_written_is_kept_once_it_has_settled(tmp_path, monkeypatch):
    _digest_cache_in(tmp_path, monkeypatch)
    part = tmp_path / "dt=2026-10-30"
    part.mkdir()
    (part / "part-0.parquet").write_bytes(b"the day's snapshot")
    storage.file_digests(part)  # as the window takes it: too recent to keep
    later = time.time_ns() + 2 * storage._RACY_NS
    monkeypatch.setattr(time, "time_ns", lambda: later)
    storage.file_digests(part)  # as the features step hashes it again, from this process's memory
    with sqlite3.connect(storage._DIGEST_CACHE) as db:
        assert db.execute("SELECT md5 FROM digest").fetchall() == [(hashlib.md5(b"the day's snapshot").hexdigest(),)]


def test_an_unusable_digest_cache_falls_back_to_reading_the_files(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(storage, "_DIGESTS", {})
    broken = tmp_path / "file-digests.sqlite"
    broken.write_bytes(b"not a database" * 100)
    monkeypatch.setattr(storage, "_DIGEST_CACHE", broken)
    part = tmp_path / "dt=2026-10-30"
    part.mkdir()
    _settled(part / "part-0.parquet", b"rows")

    assert storage.file_digests(part) == {"part-0.parquet": hashlib.md5(b"rows").hexdigest()}
    assert "file digest cache" in caplog.text and "reading the files" in caplog.text
    assert storage._DIGEST_CACHE is None  # one warning and one bounded wait per process, not one per call
