"""One SparkSession per process, built from settings (local[*] by default, a cluster URL when configured)."""

from __future__ import annotations

import os
import sys
import threading

from jobcast.config import Settings

_lock = threading.Lock()
_session = None

DEFAULT_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "100000",  # 10k is measurably slower for scoring
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.parquet.compression.codec": "zstd",
    # The JVM's memory is configuration, not a function of the board. Training's window joins and sample
    # (train.<task>.max_rows rows with their text terms) run in this JVM: category at 155k rows ran out of the
    # 1g default. Training collects through Parquet on disk, not the heap (jobs.train._collect). Local mode runs
    # the executors inside this JVM, so this is the whole Spark heap; a cluster sets its own executor memory.
    "spark.driver.memory": "4g",
    "spark.driver.maxResultSize": "2g",
}


def get_session(settings: Settings):
    global _session
    with _lock:
        if _session is not None and not _session.sparkContext._jsc.sc().isStopped():
            return _session
        # Python workers must use this interpreter (it has pyarrow, lightgbm, jobcast).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        from pyspark.sql import SparkSession

        builder = SparkSession.builder.master(settings.spark_master).appName("jobcast")
        conf = {**DEFAULT_CONF, **({"spark.ui.enabled": "false"} if settings.spark_master.startswith("local") else {})}
        conf.update(settings.spark_conf)
        for key, value in conf.items():
            builder = builder.config(key, value)
        _session = builder.getOrCreate()
        _session.sparkContext.setLogLevel("WARN")
        return _session


def stop_session() -> None:
    global _session
    with _lock:
        if _session is not None:
            _session.stop()
            _session = None
