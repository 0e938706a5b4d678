"""Forward-only numbered SQL migrations from sql/migrations, recorded in jobcast_meta.schema_migrations."""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

from jobcast.errors import DatabaseError

log = logging.getLogger(__name__)

MIGRATION_RE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
LOCK_KEY = 0x6A6F6263  # 'jobc': one migrator at a time


def discover(directory: Path) -> list[tuple[int, str, str]]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        m = MIGRATION_RE.match(path.name)
        if not m:
            raise DatabaseError(f"{path}: migration file names must look like 0001_name.sql")
        found.append((int(m.group(1)), path.name, path.read_text(encoding="utf-8")))
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise DatabaseError(f"{directory}: two migrations share a number: {versions}")
    return found


def migrate(conn, directory: Path) -> list[str]:
    """Apply pending migrations in order, each in its own transaction. Safe to re-run."""
    applied_now: list[str] = []
    conn.autocommit = False
    with conn.cursor() as cur:
        cur.execute("select pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            cur.execute("create schema if not exists jobcast_meta")
            cur.execute(
                """create table if not exists jobcast_meta.schema_migrations (
                       version int primary key, name text not null, checksum text not null,
                       applied_at timestamptz not null default now())"""
            )
            conn.commit()
            cur.execute("select version, name, checksum from jobcast_meta.schema_migrations")
            done = {v: (n, c) for v, n, c in cur.fetchall()}
            for version, name, text in discover(directory):
                checksum = hashlib.sha256(text.encode()).hexdigest()
                if version in done:
                    if done[version][1] != checksum:
                        raise DatabaseError(
                            f"sql/migrations/{name}: changed after it was applied (checksum differs); "
                            "migrations are forward-only: add a new numbered file instead"
                        )
                    continue
                try:
                    cur.execute(text)
                    cur.execute(
                        "insert into jobcast_meta.schema_migrations (version, name, checksum) values (%s, %s, %s)",
                        (version, name, checksum),
                    )
                    conn.commit()
                except Exception as exc:
                    conn.rollback()
                    raise DatabaseError(f"sql/migrations/{name}: {str(exc).strip()}") from exc
                log.info("applied migration %s", name)
                applied_now.append(name)
        finally:
            conn.rollback()
            cur.execute("select pg_advisory_unlock(%s)", (LOCK_KEY,))
            conn.commit()
    return applied_now


def migrate_project(settings) -> list[str]:
    """Apply the project's sql/migrations to the shared DB; records the files in .jobcast/migrations.json (the
    DVC stage `database`'s output)."""
    import json

    from jobcast.db.conn import connect

    directory = settings.root / "sql" / "migrations"
    conn = connect(settings)
    try:
        applied = migrate(conn, directory)
    finally:
        conn.close()
    state = settings.state_dir / "migrations.json"
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"migrations": sorted(p.name for p in directory.glob("*.sql"))}, indent=2), encoding="utf-8")
    return applied
