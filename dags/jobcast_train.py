"""jobcast_train: build the training window, retrain the three models; the gate promotes or keeps each champion.

Wiring only, like jobcast_daily. The train step logs (and returns in XCom) why it promoted or kept.
"""

import pendulum
from airflow.sdk import Param, dag
from airflow.timetables.interval import CronDataIntervalTimetable

from jobcast.airflow_tasks import default_args, prepare_day, train, window
from jobcast.tasks import names

TASKS = names()  # the declared prediction tasks (jobcast.tasks): one branch each, and the trigger form's choices
TZ = "Asia/Tokyo"


@dag(
    dag_id="jobcast_train",
    # Weekly, Monday 01:00 for the week just ended; trigger it by hand when the data shifts.
    schedule=CronDataIntervalTimetable("0 1 * * 1", timezone=TZ),
    start_date=pendulum.datetime(2026, 9, 1, tz=TZ),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retries=2, delay_s=300),
    params={
        "tasks": Param(list(TASKS), type="array", items={"type": "string", "enum": list(TASKS)},
                       title="Models", description="Which models to retrain."),
        "date": Param(None, type=["null", "string"], format="date", title="Training date",
                      description="Train on the feature window ending on this date instead of the run's logical date."),
    },
    tags=["jobcast"],
    doc_md=__doc__,
)
def jobcast_train():
    built = prepare_day() >> window()
    for name in TASKS:
        built >> train.override(task_id=f"train_{name}")(name)


jobcast_train()
