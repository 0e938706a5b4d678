"""A publisher process for the crash tests: reports each phase to a file and stalls at the chosen one."""

import sys
import time
from pathlib import Path

import psycopg2

from jobcast.publish.store import BatchInfo, publish

url, parquet_dir, stall_at, phase_file = sys.argv[1:5]


def on_phase(name: str, batch_id: int) -> None:
    Path(phase_file).write_text(f"{name} {batch_id}")
    if name == stall_at:
        time.sleep(600)  # the test SIGKILLs us here


publish(lambda: psycopg2.connect(url), Path(parquet_dir),
        BatchInfo("salary", "2026-10-31", "crash", None, "crash-test", True, None), on_phase=on_phase)
