"""Connections to the shared database: JOBCAST_DATABASE_URL when set, else the project-local cluster."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from jobcast.config import Settings
from jobcast.errors import DatabaseUnavailable


def database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    from jobcast.db.local import cluster_for

    return cluster_for(settings).url()


def connect(settings: Settings, *, application_name: str = "jobcast"):
    import psycopg2

    url = database_url(settings)
    try:
        return psycopg2.connect(url, application_name=application_name, connect_timeout=10)
    except psycopg2.OperationalError as exc:
        hint = "" if settings.database_url else " (start the project-local server with `jobcast db start`)"
        raise DatabaseUnavailable(f"cannot connect to {url}: {str(exc).strip()}{hint}") from exc


@contextmanager
def transaction(settings: Settings, *, application_name: str = "jobcast") -> Iterator:
    """A connection whose work commits on success and rolls back on any error, closed either way."""
    conn = connect(settings, application_name=application_name)
    try:
        with conn:
            yield conn
    finally:
        conn.close()
