"""What every jobcast process does at its edges: logging, and turning an error into an exit code. Shared by the
`jobcast` command line and the steps' own spark-submit entry points (`spark-submit jobs/score.py --task salary
--date D`), which call their step directly, without the command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Callable, Sequence

EXIT_BAD_INPUT = 2   # a JobcastError: what was wrong and where is on stderr; retrying will not help
EXIT_TRANSIENT = 75  # EX_TEMPFAIL: a scheduler may retry (--retries does it in the CLI)


def setup_logging(verbose: bool = False) -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    for noisy in ("py4j", "great_expectations", "matplotlib", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def exit_code(exc: BaseException, command: str) -> int | None:
    """Print one line for an expected failure and return its exit code; None for a bug (let it raise)."""
    from jobcast.errors import JobcastError, is_transient

    if is_transient(exc):
        print(f"jobcast: transient error (retry may succeed): {type(exc).__name__}: {' '.join(str(exc).split())}",
              file=sys.stderr)
        return EXIT_TRANSIENT
    if isinstance(exc, JobcastError):
        print(f"jobcast: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    chain, e = [], exc
    while e is not None and len(chain) < 10:
        chain.append(f"{e!r} {e}")
        e = e.__cause__ or e.__context__
    if "No space left on device" in " ".join(chain):  # Spark wraps it in a Java stack trace
        print(f"jobcast: error: no space left on device while running `{command}`; nothing already written "
              "was replaced (outputs are swapped in whole); free space (or set JOBCAST_DATA_DIR) and rerun",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    return None


def guarded(fn: Callable[[], int], command: str) -> int:
    """fn's exit code, or the exit code of its expected failure; Spark's session is stopped either way."""
    try:
        return fn()
    except Exception as exc:
        code = exit_code(exc, command)
        if code is None:
            raise
        return code
    finally:
        from jobcast.spark import stop_session

        stop_session()


def step_main(run: Callable, step: str, argv: Sequence[str]) -> int:
    """A step's spark-submit entry point: `spark-submit jobs/<step>.py --date D [--task T] [...]` calls
    run(ctx, ...) with the options given (the same names as the `jobcast <step>` command's)."""
    p = argparse.ArgumentParser(prog=f"jobs/{step}.py", description=f"the {step} step, as `jobcast {step}` runs it")
    p.add_argument("--date", required=True, help="logical date YYYY-MM-DD")
    p.add_argument("--run-id")
    p.add_argument("--task")
    p.add_argument("--model-version")
    p.add_argument("--force", action="store_true")
    p.add_argument("--full", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(list(argv))
    setup_logging(args.verbose)

    def call() -> int:
        from jobcast.config import Settings
        from jobcast.context import RunContext, parse_date

        ctx = RunContext(logical_date=parse_date(args.date), settings=Settings.load(),
                         **({"run_id": args.run_id} if args.run_id else {}))
        kwargs = {k: v for k, v in (("task", args.task), ("model_version", args.model_version)) if v}
        kwargs.update({k: True for k in ("force", "full") if getattr(args, k)})
        import inspect

        from jobcast.errors import ConfigError

        unknown = sorted(set(kwargs) - set(inspect.signature(run).parameters))
        if unknown:
            raise ConfigError(f"jobs/{step}.py: does not take {', '.join('--' + k.replace('_', '-') for k in unknown)}")
        print(run(ctx, **kwargs).summary())
        return 0

    return guarded(call, step)
