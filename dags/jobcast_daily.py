"""jobcast_daily: one logical date's predictions, from the app tables to the live views.

Wiring only: every task calls a step in jobs/ through jobcast.airflow.run_step (imported lazily, so
parsing this file does no work). Each step is idempotent per date, so retries and re-runs are safe.
"""

import pendulum
from airflow.sdk import Param, dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

from jobcast.airflow_tasks import SPARK_POOL, on_failure, prepare_day

TZ = "Asia/Tokyo"


@dag(
    dag_id="jobcast_daily",
    # A run covers one calendar day (Asia/Tokyo) and starts at 03:00 the next morning; its logical date
    # is the start of that day, so `airflow dags test jobcast_daily 2026-10-30` predicts for 2026-10-30.
    schedule=CronDataIntervalTimetable("0 3 * * *", timezone=TZ),
    start_date=pendulum.datetime(2026, 9, 1, tz=TZ),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": pendulum.duration(minutes=2), "on_failure_callback": on_failure},
    params={
        "tasks": Param(["salary"], type="array", items={"type": "string", "enum": ["salary"]},
                       title="Predictions", description="Which prediction tasks to score and publish."),
        "date": Param(None, type=["null", "string"], format="date", title="Logical date override",
                      description="Process this date (YYYY-MM-DD) instead of the run's logical date."),
        "model_version": Param(None, type=["null", "string"], title="Pin a model version",
                               description="Score with models/<task>/<version> instead of the champion."),
        "force": Param(False, type="boolean", title="Force publish",
                       description="Make the batch live even if a newer date's batch is live (breaks the backfill policy)."),
        "dry_run": Param(False, type="boolean", title="Dry run",
                         description="Extract, score and validate, but do not publish."),
    },
    tags=["jobcast"],
    doc_md=__doc__,
)
def jobcast_daily():
    @task(pool=SPARK_POOL)
    def score_salary(**context):
        from jobcast.airflow import run_step

        return run_step("score", context, task="salary")

    @task
    def validate_salary(**context):
        from jobcast.airflow import run_step

        return run_step("validate", context, task="salary")

    @task
    def publish_salary(**context):
        from jobcast.airflow import run_step

        return run_step("publish", context, task="salary")

    prepare_day() >> score_salary() >> validate_salary() >> publish_salary()


jobcast_daily()
