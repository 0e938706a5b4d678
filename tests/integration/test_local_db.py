"""The project-local PostgreSQL: started by our own code (as root or not), migrations safe to re-run."""

import socket

import psycopg2
import pytest

from jobcast.db.local import LocalCluster
from jobcast.db.migrate import migrate
from jobcast.errors import DatabaseError

from conftest import REPO, free_port

pytestmark = pytest.mark.integration


def test_cluster_start_is_idempotent_and_serves_sql(pg_cluster):
    assert pg_cluster.running()
    assert pg_cluster.start() == pg_cluster.url()  # second start: no-op
    with psycopg2.connect(pg_cluster.url()) as c, c.cursor() as cur:
        cur.execute("show server_version")
        assert cur.fetchone()[0].startswith("15")


def test_taken_port_gives_a_clear_error(tmp_path, pg_cluster):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        other = LocalCluster(base_dir=tmp_path / "other", port=port, bindir=pg_cluster.bindir)
        with pytest.raises(DatabaseError, match=f"port {port}.*JOBCAST_PG_PORT"):
            other.start()
    other.destroy()


def test_stop_then_start_keeps_data(tmp_path, pg_cluster):
    c = LocalCluster(base_dir=tmp_path / "c2", port=free_port(), bindir=pg_cluster.bindir, server_options=("-c fsync=off",))
    try:
        with psycopg2.connect(c.start()) as conn, conn.cursor() as cur:
            cur.execute("create table kept (x int); insert into kept values (42)")
        c.stop()
        assert not c.running()
        with psycopg2.connect(c.start()) as conn, conn.cursor() as cur:
            cur.execute("select x from kept")
            assert cur.fetchone() == (42,)
    finally:
        c.destroy()


def test_migrate_twice_applies_nothing_the_second_time(db_url):
    conn = psycopg2.connect(db_url)
    try:
        assert migrate(conn, REPO / "sql" / "migrations") == []  # the template already has them
        with conn.cursor() as cur:
            cur.execute("select count(*) from jobcast_meta.schema_migrations")
            assert cur.fetchone()[0] == len(list((REPO / "sql" / "migrations").glob("*.sql")))
    finally:
        conn.close()


def test_an_edited_applied_migration_is_refused(db_url, tmp_path):
    for f in (REPO / "sql" / "migrations").glob("*.sql"):
        (tmp_path / f.name).write_text(f.read_text() + "\n-- edited\n")
    conn = psycopg2.connect(db_url)
    try:
        with pytest.raises(DatabaseError, match="forward-only"):
            migrate(conn, tmp_path)
    finally:
        conn.close()
