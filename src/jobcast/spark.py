"""One SparkSession per process, built from settings: local[*] by default, a cluster URL (spark://...) when
configured, or a Spark Connect client when JOBCAST_SPARK_MASTER is sc://host:port (jobcast.spark_connect: one
long-lived server for every step, so a step starts no JVM)."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

from jobcast.config import Settings

log = logging.getLogger(__name__)
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


# Session-level SQL settings: a Spark Connect client sets these on its session (the server owns the JVM ones).
SESSION_CONF = ("spark.sql.session.timeZone", "spark.sql.shuffle.partitions", "spark.sql.execution.arrow.maxRecordsPerBatch",
                "spark.sql.parquet.compression.codec")


def is_remote(settings: Settings) -> bool:
    return settings.spark_master.startswith("sc://")


def _alive(session) -> bool:
    if type(session).__module__.startswith("pyspark.sql.connect"):  # a client: no SparkContext to ask
        return not session.is_stopped
    return not session.sparkContext._jsc.sc().isStopped()


def get_session(settings: Settings):
    global _session
    with _lock:
        if _session is not None and _alive(_session):
            return _session
        # Python workers must use this interpreter (it has pyarrow, lightgbm, jobcast).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        from pyspark.sql import SparkSession

        t0 = time.perf_counter()
        if is_remote(settings):
            _session = _connect(SparkSession, settings)
            log.info("spark: Spark Connect client of %s (%.1fs)", settings.spark_master.split("/;")[0], time.perf_counter() - t0)
            return _session
        builder = SparkSession.builder.master(settings.spark_master).appName("jobcast")
        conf = {**DEFAULT_CONF, **({"spark.ui.enabled": "false"} if settings.spark_master.startswith("local") else {})}
        conf.update(settings.spark_conf)
        for key, value in conf.items():
            builder = builder.config(key, value)
        _session = builder.getOrCreate()
        _session.sparkContext.setLogLevel("WARN")
        log.info("spark: local session %s started (%.1fs)", settings.spark_master, time.perf_counter() - t0)
        return _session


def with_session_id(url: str, key: str) -> str:
    """The Spark Connect URL with a session id derived from `key` (an Airflow run): the tasks of one run share
    one server-side session, so its Python workers (pandas, pyarrow, LightGBM, the loaded models) are started
    once per run, not once per task: a new session starts new workers (measured: a first mapInPandas 5.1 s in
    a new session, 0.4 s in the session again)."""
    import uuid

    if "session_id=" in url:
        return url
    sid = uuid.uuid5(uuid.NAMESPACE_URL, f"jobcast:{key}")
    base, sep, params = url.partition(";")
    if not sep:
        base = base if base.endswith("/") else base + "/"
    return f"{base};session_id={sid}" + (f";{params}" if params else "")


def _connect(SparkSession, settings: Settings):
    """A Spark Connect client session: nothing starts here. A server that does not answer is transient (the
    step is retried), with the address and how to start one. A shared session that the server has already
    closed (idle past its timeout) is replaced by a new one."""
    from jobcast.errors import TransientError

    try:
        try:
            session = SparkSession.builder.remote(settings.spark_master).appName("jobcast").getOrCreate()
            session.conf.get("spark.sql.session.timeZone")  # the first call reaches the server
        except Exception as exc:  # noqa: BLE001
            if "SESSION_CLOSED" not in str(exc) or "session_id=" not in settings.spark_master:
                raise
            import re

            fresh = re.sub(r";session_id=[^;]*", "", settings.spark_master)
            session = SparkSession.builder.remote(fresh).appName("jobcast").create()
        conf = {**{k: DEFAULT_CONF[k] for k in SESSION_CONF}, **settings.spark_conf}
        for key, value in conf.items():
            session.conf.set(key, value)
    except Exception as exc:  # noqa: BLE001 - grpc's errors have no common base worth naming
        if "UNAVAILABLE" in str(exc) or "Connection refused" in str(exc) or "failed to connect" in str(exc).lower():
            raise TransientError(f"Spark Connect server {settings.spark_master} is not answering "
                                 f"(`jobcast spark start` runs one): {str(exc).splitlines()[0][:300]}") from exc
        raise
    return session


def parallelism(spark) -> int:
    """The session's default parallelism; a Spark Connect client has no SparkContext to ask, so it asks the
    server's conf, then assumes this machine's cores (the server is local to it by default)."""
    try:
        return spark.sparkContext.defaultParallelism
    except Exception:  # noqa: BLE001 - PySparkNotImplementedError / AttributeError on a Connect session
        value = spark.conf.get("spark.default.parallelism", None)
        return int(value) if value else (os.cpu_count() or 2)


def stop_session() -> None:
    global _session
    with _lock:
        if _session is not None:
            _session.stop()
            _session = None
