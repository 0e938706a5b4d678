"""rollback: make the previous (or a named) published batch of a task live again, in one transaction."""

from __future__ import annotations

import logging

from jobcast.config import Settings
from jobcast.db.conn import connect

log = logging.getLogger(__name__)


def run(settings: Settings, *, task: str, to_batch: int | None = None) -> dict:
    from jobcast.publish.store import rollback

    conn = connect(settings, application_name="jobcast-rollback")
    try:
        out = rollback(conn, task, to_batch)
    finally:
        conn.close()
    log.info("%s: batch %s is live again (batch %s rolled back)", task, out["live_batch_id"], out["rolled_back_batch_id"])
    return out


def cleanup(settings: Settings, *, task: str) -> dict:
    """Fail batches that interrupted runs left loading/validated, finish detaches left pending, and apply
    retention (`publish.keep_batches`), each wait bounded. Returns {abandoned, dropped, deferred, note}."""
    from jobcast.publish.store import cleanup as store_cleanup

    conn = connect(settings, application_name="jobcast-cleanup")
    try:
        return store_cleanup(conn, task, keep=settings.param_number("publish.keep_batches", int))
    finally:
        conn.close()
