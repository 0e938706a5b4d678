"""Work directories a killed process leaves behind (SIGKILL and the OOM killer run no cleanup)."""

import os
import socket
import subprocess
import sys

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
