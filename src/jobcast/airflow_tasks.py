"""Task definitions shared by the DAG files: thin @task wrappers over jobs/, imported at parse time.

Each task is one hop from its DAG line to its jobs/ function: it imports that function when it runs and hands
it to jobcast.airflow.run_step, which only adds the run's date, params and retry policy. Only airflow.sdk
and stdlib-only modules at module level.
"""

import datetime as dt
import os

from airflow.sdk import AssetAlias, task

from jobcast.airflow import CHAMPION_ALIAS, SPARK_POOL  # stdlib-only module: cheap at parse time


@task
def extract(**context):
    from jobcast.airflow import run_step
    from jobs.extract import run

    return run_step(run, context)


@task
def validate_raw(**context):
    from jobcast.airflow import run_step
    from jobs.validate import run

    return run_step(run, context, layer="raw")


@task(pool=SPARK_POOL)
def features(**context):
    from jobcast.airflow import run_step
    from jobs.features import run

    return run_step(run, context)


@task
def validate_features(**context):
    from jobcast.airflow import run_step
    from jobs.validate import run

    return run_step(run, context, layer="features")


@task(pool=SPARK_POOL)
def window(**context):
    from jobcast.airflow import run_step
    from jobs.window import run

    return run_step(run, context)


# Per prediction task; the DAGs give each instance its task_id (score_salary, ...) with .override().
@task(pool=SPARK_POOL)
def score(prediction_task: str, **context):
    from jobcast.airflow import run_step
    from jobs.score import run

    return run_step(run, context, task=prediction_task)


@task
def validate_predictions(prediction_task: str, **context):
    from jobcast.airflow import run_step
    from jobs.validate import run

    return run_step(run, context, task=prediction_task)


@task
def publish(prediction_task: str, **context):
    from jobcast.airflow import run_step
    from jobs.publish import run

    return run_step(run, context, task=prediction_task)


# LightGBM uses every core: one heavy task at a time, like Spark. A promoted model is an asset event
# (jobcast_champion_<task>, its version in the extra) through the alias: a kept champion emits none.
@task(pool=SPARK_POOL, outlets=[AssetAlias(CHAMPION_ALIAS)])
def train(prediction_task: str, **context):
    from jobcast.airflow import run_step
    from jobs.train import run

    return run_step(run, context, task=prediction_task)


def prepare_day():
    """extract → validate_raw → features → validate_features for the run's date; returns the last task."""
    last = validate_features()
    extract() >> validate_raw() >> features() >> last
    return last


def on_failure(context):
    from jobcast.airflow import on_failure as log_failure

    log_failure(context)


def default_args(retries: int, delay_s: float) -> dict:
    """Retries are for transient errors only (run_step fails bad input, config, gate and model errors at once,
    by jobcast.errors.is_transient), with exponential backoff. JOBCAST_RETRY_DELAY_S overrides the first
    delay (the tests use 1 s)."""
    delay = float(os.environ.get("JOBCAST_RETRY_DELAY_S") or delay_s)
    return {"retries": retries, "retry_delay": dt.timedelta(seconds=delay), "retry_exponential_backoff": 2.0,
            "max_retry_delay": dt.timedelta(minutes=30), "on_failure_callback": on_failure}
