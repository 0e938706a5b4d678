"""One long-lived Spark Connect server for every step (`jobcast spark start|stop|status`).

Under a real scheduler each Airflow task is its own process, and each started its own Spark JVM (`local[*]`):
about half a minute per task before any work. With a Spark Connect server running, a step's session is a gRPC
client (`JOBCAST_SPARK_MASTER=sc://host:port`, or the Airflow connection `jobcast_spark`): nothing to start.

The server is pyspark's own (`sbin/start-connect-server.sh`, the `spark-connect` jar pyspark ships), run with
the same interpreter for its Python workers (mapInPandas scoring imports jobcast and LightGBM there) and the
same JVM settings jobcast gives a local session (jobcast.spark.DEFAULT_CONF). Its pid file and logs live in
<state dir>/spark-connect/. Its own master is local[*], or JOBCAST_SPARK_CONNECT_MASTER (a standalone cluster).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from jobcast.config import Settings
from jobcast.errors import ConfigError, JobcastError
from jobcast.storage import process_alive

DEFAULT_PORT = 15002


@dataclass(frozen=True)
class Server:
    home: Path  # pid file and logs
    port: int
    master: str
    bind: str = "127.0.0.1"  # 0.0.0.0 in a container that other services reach
    conf: tuple[tuple[str, str], ...] = ()  # JOBCAST_SPARK_CONF: e.g. the executors' memory on a cluster

    @property
    def url(self) -> str:
        return f"sc://127.0.0.1:{self.port}"


def server_for(settings: Settings) -> Server:
    raw = os.environ.get("JOBCAST_SPARK_CONNECT_PORT") or str(DEFAULT_PORT)
    try:
        port = int(raw)
    except ValueError as exc:
        raise ConfigError(f"JOBCAST_SPARK_CONNECT_PORT={raw!r}: expected an integer port") from exc
    return Server(home=settings.state_dir / "spark-connect", port=port,
                  master=os.environ.get("JOBCAST_SPARK_CONNECT_MASTER", "local[*]"),
                  bind=os.environ.get("JOBCAST_SPARK_CONNECT_BIND", "127.0.0.1"), conf=tuple(settings.spark_conf.items()))


def _spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def _env(server: Server) -> dict[str, str]:
    server.home.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "SPARK_HOME": str(_spark_home()), "SPARK_PID_DIR": str(server.home),
            "SPARK_LOG_DIR": str(server.home / "logs"), "SPARK_IDENT_STRING": "jobcast",
            "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}


def _pid(server: Server) -> int | None:
    """The server's pid from spark-daemon.sh's pid file, if that process is alive."""
    for f in server.home.glob("spark-jobcast-org.apache.spark.sql.connect.service.SparkConnectServer-*.pid"):
        try:
            pid = int(f.read_text().strip())
            os.kill(pid, 0)
            return pid
        except (ValueError, ProcessLookupError, PermissionError):
            continue
    return None


def listening(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def status(server: Server) -> str:
    pid = _pid(server)
    if pid and listening(server.port):
        return f"running: {server.url} (pid {pid}, master {server.master}, logs {server.home / 'logs'})"
    if pid:
        return f"starting or unhealthy: pid {pid} is not listening on {server.port} (logs {server.home / 'logs'})"
    return "stopped"


def start(server: Server, *, timeout: float = 120.0, foreground: bool = False) -> str:
    """Start the server (idempotent) and wait, at most `timeout` seconds, until it accepts connections.
    foreground=True replaces this process with the server (a container's main process)."""
    from jobcast.spark import DEFAULT_CONF

    if not foreground and _pid(server) and listening(server.port):
        return status(server)
    if listening(server.port):
        raise ConfigError(f"port {server.port} is taken by another process; set JOBCAST_SPARK_CONNECT_PORT")
    conf = {**DEFAULT_CONF, "spark.connect.grpc.binding.port": str(server.port),
            "spark.connect.grpc.binding.address": server.bind, "spark.ui.enabled": "false",
            "spark.log.level": "WARN",
            # the Python workers of mapInPandas run this interpreter (jobcast, pyarrow, lightgbm)
            "spark.pyspark.python": sys.executable, "spark.pyspark.driver.python": sys.executable, **dict(server.conf)}
    memory = conf.pop("spark.driver.memory")
    cmd = [str(_spark_home() / "sbin" / "start-connect-server.sh"), "--master", server.master, "--driver-memory", memory]
    for key, value in conf.items():
        cmd += ["--conf", f"{key}={value}"]
    if foreground:
        os.execve(cmd[0], cmd, {**_env(server), "SPARK_NO_DAEMONIZE": "1"})
    proc = subprocess.run(cmd, env=_env(server), capture_output=True, text=True)
    if proc.returncode != 0:
        raise JobcastError(f"spark connect server did not start: {proc.stderr.strip() or proc.stdout.strip()}")
    started = time.monotonic()
    deadline = started + timeout
    while not listening(server.port):
        if _pid(server) is None and time.monotonic() - started > 5:
            raise JobcastError(f"spark connect server exited at start; see {server.home / 'logs'}")
        if time.monotonic() > deadline:
            raise JobcastError(f"spark connect server not listening on {server.port} after {timeout:.0f} s; "
                               f"see {server.home / 'logs'}")
        time.sleep(0.5)
    return status(server)


def stop(server: Server, *, timeout: float = 60.0) -> str:
    """Stop the server and wait, at most `timeout` seconds, until its JVM has exited (spark-daemon.sh removes the
    pid file as soon as it has signalled the process, so the pid is watched, not the file); then SIGKILL."""
    pid = _pid(server)
    if pid is None:
        return "stopped"
    subprocess.run([str(_spark_home() / "sbin" / "stop-connect-server.sh")], env=_env(server), capture_output=True, text=True)
    deadline = time.monotonic() + timeout
    while process_alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            break
        time.sleep(0.2)
    return "stopped"


