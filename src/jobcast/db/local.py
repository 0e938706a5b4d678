"""A private PostgreSQL cluster under the project, started from the server binaries on this machine.

PostgreSQL refuses to run as root, so when we are root every server binary runs as an unprivileged
system user (`postgres` when present) through setpriv; as a normal user they run directly.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import pwd
import shutil
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from jobcast.errors import DatabaseError

log = logging.getLogger(__name__)

SUPERUSER = "jobcast"
DBNAME = "jobcast"


def find_bindir(explicit: str | None = None) -> Path:
    candidates: list[str] = []
    if explicit:
        candidates.append(explicit)
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if out.returncode == 0:
            candidates.append(out.stdout.strip())
    for cand in candidates:
        if (Path(cand) / "initdb").is_file() and (Path(cand) / "pg_ctl").is_file():
            return Path(cand)
    raise DatabaseError(
        "PostgreSQL server binaries not found (looked for initdb in "
        f"{', '.join(candidates) or '/usr/lib/postgresql/*/bin'}); install them "
        "(apt-get install postgresql-15) or set JOBCAST_PG_BINDIR"
    )


def _traversable_by_others(path: Path) -> bool:
    for part in (path, *path.parents):
        if part.exists() and not (part.stat().st_mode & stat.S_IXOTH):
            return False
    return True


@dataclass(frozen=True)
class LocalCluster:
    """One cluster: data dir, socket dir, port. Start/stop are idempotent."""

    base_dir: Path  # preferred location (inside the project); may be relocated when running as root
    port: int
    bindir: Path
    server_options: tuple[str, ...] = ()

    @property
    def _key(self) -> str:
        return hashlib.sha1(str(self.base_dir.resolve()).encode()).hexdigest()[:10]

    @property
    def run_as(self) -> str | None:
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "jobcast-pg"):
            try:
                pwd.getpwnam(name)
                return name
            except KeyError:
                continue
        subprocess.run(["useradd", "--system", "--no-create-home", "jobcast-pg"], check=True)
        return "jobcast-pg"

    @property
    def home(self) -> Path:
        """Where the cluster lives: the project dir unless the server user cannot reach it."""
        if os.geteuid() == 0 and not _traversable_by_others(self.base_dir.parent):
            return Path("/tmp") / f"jobcast-pg-{self._key}"
        return self.base_dir

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def socket_dir(self) -> Path:
        # A Unix socket path must stay under 107 bytes: keep it short and outside the project.
        return Path("/tmp") / f".jobcast-s-{self._key}"

    @property
    def log_file(self) -> Path:
        return self.home / "server.log"

    def url(self, dbname: str = DBNAME) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def _cmd(self, *args: str) -> list[str]:
        user = self.run_as
        if user is None:
            return list(args)
        return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--", *args]

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(self._cmd(*args), capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise DatabaseError(f"{' '.join(args[:2])} failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-800:]}")
        return proc

    def _chown(self, *paths: Path) -> None:
        user = self.run_as
        if user:
            pw = pwd.getpwnam(user)
            for p in paths:
                os.chown(p, pw.pw_uid, pw.pw_gid)

    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def running(self) -> bool:
        if not self.initialised():
            return False
        return self._run(str(self.bindir / "pg_ctl"), "status", "-D", str(self.data_dir), check=False).returncode == 0

    def init(self) -> None:
        if self.initialised():
            return
        self.home.mkdir(parents=True, exist_ok=True)
        self.home.chmod(0o700)
        self._chown(self.home)
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER, "-A", "trust",
            "-E", "UTF8", "--no-locale", "--no-sync",
        )
        log.info("initialised PostgreSQL cluster in %s", self.data_dir)

    def _port_in_use(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", self.port))
            except OSError:
                return True
        return False

    def start(self) -> str:
        self.init()
        if not self.running():
            if self._port_in_use():
                raise DatabaseError(
                    f"port {self.port} on 127.0.0.1 is already in use by another process; "
                    "set JOBCAST_PG_PORT to a free port (or JOBCAST_DATABASE_URL to use an existing server)"
                )
            self.socket_dir.mkdir(mode=0o700, exist_ok=True)
            self._chown(self.socket_dir)
            opts = [f"-p {self.port}", f"-k {self.socket_dir}", "-c listen_addresses=127.0.0.1", *self.server_options]
            self._run(
                str(self.bindir / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.data_dir),
                "-l", str(self.log_file), "-o", " ".join(opts),
            )
            log.info("started PostgreSQL on 127.0.0.1:%s (log %s)", self.port, self.log_file)
        self._ensure_database()
        return self.url()

    def _ensure_database(self) -> None:
        import psycopg2

        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg2.connect(self.url("postgres"), connect_timeout=5)
                break
            except psycopg2.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise DatabaseError(f"PostgreSQL on port {self.port} does not accept connections: {exc}") from exc
                time.sleep(0.2)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("select 1 from pg_database where datname = %s", (DBNAME,))
                if cur.fetchone() is None:
                    cur.execute(f'create database "{DBNAME}"')
        finally:
            conn.close()

    def stop(self) -> None:
        if self.running():
            self._run(str(self.bindir / "pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(self.data_dir))
            log.info("stopped PostgreSQL on port %s", self.port)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)
        shutil.rmtree(self.socket_dir, ignore_errors=True)


def cluster_for(settings) -> LocalCluster:
    return LocalCluster(base_dir=settings.state_dir / "pg", port=settings.pg_port, bindir=find_bindir(settings.pg_bindir))
