"""jobcast_daily: one logical date's predictions, from the app tables to the live views.

Wiring only: every task calls a step in jobs/ through jobcast.airflow.run_step (imported lazily, so
parsing this file does no work). Each step is idempotent per date, so retries and re-runs are safe.
"""

import pendulum
from airflow.sdk import Param, dag
from airflow.timetables.interval import CronDataIntervalTimetable

from jobcast.airflow_tasks import default_args, prepare_day, publish, score, validate_predictions
from jobcast.tasks import names

TASKS = names()  # the declared prediction tasks (jobcast.tasks): one branch each, and the trigger form's choices
TZ = "Asia/Tokyo"


@dag(
    dag_id="jobcast_daily",
    # A run covers one calendar day (Asia/Tokyo) and starts at 03:00 the next morning; its logical date
    # is the start of that day, so `airflow dags test jobcast_daily 2026-10-30` predicts for 2026-10-30.
    schedule=CronDataIntervalTimetable("0 3 * * *", timezone=TZ),
    start_date=pendulum.datetime(2026, 9, 1, tz=TZ),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retries=3, delay_s=120),
    params={
        "tasks": Param(list(TASKS), type="array", items={"type": "string", "enum": list(TASKS)},
                       title="Predictions", description="Which prediction tasks to score and publish (the others are skipped)."),
        "date": Param(None, type=["null", "string"], format="date", title="Logical date override",
                      description="Process this date (YYYY-MM-DD) instead of the run's logical date."),
        "model_versions": Param({}, type="object", title="Pin model versions",
                                description='Score with these versions instead of the champions, e.g. {"salary": "20261030-1a2b3c4d"} '
                                            "(models/<task>/<version>; `jobcast models list --task salary`)."),
        "force": Param(False, type="boolean", title="Force publish",
                       description="Make the batch live even if a newer date's batch is live (breaks the backfill policy)."),
        "dry_run": Param(False, type="boolean", title="Dry run",
                         description="Extract, score and validate, but do not publish."),
        "refresh_snapshot": Param(False, type="boolean", title="Re-take the snapshot",
                                  description="Extract the date again from today's source tables (e.g. after fixing "
                                              "bad source rows). By default a date's snapshot, once taken, is kept: "
                                              "it is the board as it was on that day."),
        "full_rescore": Param(False, type="boolean", title="Full rescore",
                              description="Score every open posting. By default the postings whose features did not "
                                          "change since the last batch of the same model keep its predictions."),
    },
    tags=["jobcast"],
    doc_md=__doc__,
)
def jobcast_daily():
    ready = prepare_day()
    # The three predictions are independent branches; Spark scoring shares one pool, the rest run in parallel.
    for name in TASKS:
        (ready
         >> score.override(task_id=f"score_{name}")(name)
         >> validate_predictions.override(task_id=f"validate_{name}")(name)
         >> publish.override(task_id=f"publish_{name}")(name))


jobcast_daily()
