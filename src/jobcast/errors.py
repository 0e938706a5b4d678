"""The one error family users see: each message says what was wrong, where, and what was expected."""


class JobcastError(Exception):
    """Base of every expected failure; the CLI prints its message on one line and exits 2."""


class ConfigError(JobcastError):
    """Settings or params are missing or invalid."""


class DatabaseError(JobcastError):
    """The project-local PostgreSQL cannot be started, reached or migrated."""


class InputDataError(JobcastError):
    """Source or intermediate data breaks the documented contract."""


class ValidationFailed(JobcastError):
    """A Great Expectations suite failed; carries the Data Docs report path."""

    def __init__(self, message: str, report_path: str | None = None):
        super().__init__(message)
        self.report_path = report_path


class ModelError(JobcastError):
    """No usable model, or a model that does not fit the features."""


class PublishError(JobcastError):
    """A batch cannot be published (refused, conflicting run, or not validated)."""


class TransientError(JobcastError):
    """A fault a later try can get past: the connection dropped, the server restarted, a lock or statement
    timed out, a Spark executor was lost, or another run holds the task's publish lock. Retried with backoff
    (Airflow's retries, the CLI's --retries); every other error fails at once."""


class DatabaseUnavailable(TransientError, DatabaseError):
    """The database cannot be reached right now (down, restarting, refusing connections)."""


class PublishBusy(TransientError, PublishError):
    """Another publish, rollback or cleanup of the same task holds its lock, or a lock wait timed out."""


# Messages of Spark/py4j failures that a new attempt can get past (the executor or worker went away).
_TRANSIENT_SPARK = ("ExecutorLostFailure", "Python worker exited unexpectedly", "Connection reset by peer",
                    "Py4JNetworkError", "Answer from Java side is empty", "StatusCode.UNAVAILABLE")


def is_transient(exc: BaseException) -> bool:
    """The one classification every step, the CLI and Airflow use: retry this, or fail at once?

    A jobcast error says what it is (only TransientError and its kin are retried). Otherwise: psycopg2's
    OperationalError/InterfaceError (connection lost, server shutting down, lock_timeout, statement timeout,
    serialization failure, deadlock), builtin connection errors, and Spark losing an executor or a Python
    worker are transient. Anything else (bad input, config, a model or gate failure, a bug) is not: retrying
    would fail the same way, later.
    """
    if isinstance(exc, JobcastError):
        return isinstance(exc, TransientError)
    import psycopg2

    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:  # e.g. a SystemError raised while psycopg2 lost the server
        seen.add(id(cause))
        if isinstance(cause, (psycopg2.OperationalError, psycopg2.InterfaceError, ConnectionError, TimeoutError)):
            return True
        if any(marker in f"{type(cause).__name__}: {cause}" for marker in _TRANSIENT_SPARK):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def call_with_retries(fn, *, retries: int, delay_s: float = 5.0, what: str = "step", max_delay_s: float = 300.0):
    """fn(), retried up to `retries` times with exponential backoff when it fails with a transient error."""
    import logging
    import time

    attempt = 0
    while True:
        try:
            return fn()
        except Exception as exc:
            if attempt >= retries or not is_transient(exc):
                raise
            wait = min(delay_s * 2 ** attempt, max_delay_s)
            attempt += 1
            logging.getLogger(__name__).warning("%s: transient error (%s: %s); retry %d of %d in %.0f s", what,
                                                type(exc).__name__, " ".join(str(exc).split())[:300], attempt, retries, wait)
            time.sleep(wait)
