"""The prediction tasks: one declaration each (jobcast.tasks.base.Task), found here.

Every module of this package other than `base` declares one task as TASK. A board's own task lives in its own
module, named in JOBCAST_TASK_MODULES (comma-separated) or passed to register(). A task from outside this
package is shipped to Spark's Python workers by value, so scoring finds it there too.

Cheap to import (the DAG files do at parse time): the declarations import nothing heavy at module level.
"""

from __future__ import annotations

import importlib
import os
import pkgutil

from jobcast.errors import ConfigError
from jobcast.tasks.base import Quality, Source, Task

__all__ = ["Quality", "Source", "Task", "all_tasks", "get", "names", "register", "unregister"]

_REGISTRY: dict[str, Task] = {}
_LOADED = False


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    found = [f"{__name__}.{m.name}" for m in pkgutil.iter_modules(__path__) if m.name != "base"]
    extra = [m.strip() for m in os.environ.get("JOBCAST_TASK_MODULES", "").split(",") if m.strip()]
    for module_name in [*found, *extra]:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"task module {module_name!r} (JOBCAST_TASK_MODULES or jobcast.tasks): cannot import: {exc}") from exc
        declared = getattr(module, "TASK", None)
        if not isinstance(declared, Task):
            raise ConfigError(f"task module {module_name}: expected TASK = <a jobcast.tasks.base.Task instance>")
        register(declared)


def register(task: Task) -> Task:
    """Add a declaration (a board's own task, or a test's). Its name must be new and a plain identifier (it
    becomes file names, params keys and Airflow task ids)."""
    if not isinstance(task, Task):
        raise ConfigError(f"{task!r}: expected a jobcast.tasks.base.Task instance")
    name = getattr(task, "name", None)
    if not isinstance(name, str) or not name.isidentifier() or not name.islower():
        raise ConfigError(f"{type(task).__name__}: task name {name!r}: expected a lower-case identifier")
    current = _REGISTRY.get(name)
    if current is not None and type(current) is not type(task):
        raise ConfigError(f"task {name!r} is declared twice ({type(current).__module__} and {type(task).__module__})")
    _REGISTRY[name] = task
    module = type(task).__module__
    if not module.startswith("jobcast."):
        # Spark's Python workers import jobcast but not a board's or a test's module: send the class by value.
        from pyspark import cloudpickle

        cloudpickle.register_pickle_by_value(importlib.import_module(module))
    return task


def unregister(name: str) -> None:
    """Forget a declaration added by register() (a test's, when it is done)."""
    _REGISTRY.pop(name, None)


def all_tasks() -> list[Task]:
    _load()
    return sorted(_REGISTRY.values(), key=lambda t: (t.order, t.name))


def names() -> tuple[str, ...]:
    return tuple(t.name for t in all_tasks())


def get(task: str | Task) -> Task:
    if isinstance(task, Task):
        return task
    _load()
    try:
        return _REGISTRY[task]
    except KeyError:
        raise ConfigError(f"task {task!r}: unknown prediction task; expected one of {list(names())}") from None
