"""One error taxonomy: what is retried (transient) and what fails at once, for every step, the CLI and Airflow."""

import os
import subprocess
import sys
from pathlib import Path

import psycopg2
import psycopg2.errors
import pytest

from jobcast.errors import (ConfigError, DatabaseUnavailable, InputDataError, ModelError, PublishBusy, PublishError,
                            TransientError, ValidationFailed, call_with_retries, is_transient)

from conftest import REPO, free_port


def caused_by(exc, cause):
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize("exc, transient", [
    (psycopg2.OperationalError("server closed the connection unexpectedly"), True),
    (psycopg2.errors.AdminShutdown("terminating connection due to administrator command"), True),
    (psycopg2.errors.LockNotAvailable("canceling statement due to lock timeout"), True),
    (psycopg2.errors.QueryCanceled("canceling statement due to statement timeout"), True),
    (psycopg2.InterfaceError("connection already closed"), True),
    (ConnectionResetError("Connection reset by peer"), True),
    (RuntimeError("Job aborted due to stage failure: ExecutorLostFailure (executor 1 exited)"), True),
    (caused_by(SystemError("utf_8_decode returned a result with an exception set"),
               psycopg2.errors.AdminShutdown("terminating connection")), True),  # seen when the server drops a COPY
    (TransientError("slow.job_postings: connection lost"), True),
    (DatabaseUnavailable("cannot connect"), True),
    (PublishBusy("another publish of salary is running"), True),
    (PublishError("duplicate job_id values"), False),
    (InputDataError("duplicate job_id"), False),
    (caused_by(InputDataError("app.job_postings: column title does not exist"), psycopg2.OperationalError("x")), False),
    (ConfigError("params.yaml: missing 'x'"), False),
    (ModelError("no champion"), False),
    (ValidationFailed("3 expectations failed"), False),
    (psycopg2.errors.UniqueViolation("duplicate key"), False),
    (KeyError("a bug"), False),
])
def test_one_classification_for_every_error(exc, transient):
    assert is_transient(exc) is transient


def test_transient_errors_are_retried_with_backoff_and_others_fail_at_once():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise psycopg2.OperationalError("server closed the connection unexpectedly")
        return "done"

    assert call_with_retries(flaky, retries=2, delay_s=0.01) == "done" and len(calls) == 3
    calls.clear()
    with pytest.raises(psycopg2.OperationalError):
        call_with_retries(flaky, retries=1, delay_s=0.01)  # out of retries
    assert len(calls) == 2

    def bad():
        calls.append(1)
        raise InputDataError("app.job_postings: 1 duplicate job_id values")

    calls.clear()
    with pytest.raises(InputDataError):
        call_with_retries(bad, retries=5, delay_s=0.01)
    assert len(calls) == 1


def test_the_cli_retries_a_transient_error_then_exits_75(tmp_path):
    env = {**os.environ, "JOBCAST_DATABASE_URL": f"postgresql://jobcast@127.0.0.1:{free_port()}/jobcast",
           "JOBCAST_HOME": str(REPO), "JOBCAST_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.run([str(Path(sys.executable).parent / "jobcast"), "--retries", "2", "--retry-delay", "0.05",
                           "extract", "--date", "2026-10-30"], env=env, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 75, proc.stderr[-2000:]
    assert "retry 1 of 2" in proc.stderr and "retry 2 of 2" in proc.stderr
    assert "jobcast: transient error (retry may succeed): DatabaseUnavailable: cannot connect" in proc.stderr
