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
