"""Loads dags/ with Airflow's DagBag and prints a JSON report (run as a script, in a prepared AIRFLOW_HOME)."""

import json
import sys
import time

from airflow.dag_processing.dagbag import DagBag

t0 = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
parse_seconds = time.perf_counter() - t0
report = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "parse_seconds": parse_seconds, "dags": {}}
for dag_id, dag in bag.dags.items():
    report["dags"][dag_id] = {
        "tasks": sorted(t.task_id for t in dag.tasks),
        "downstream": {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks},
        "params": {k: {"default": v.value if hasattr(v, "value") else None, "schema": v.schema}
                   for k, v in dag.params.items()} if hasattr(dag.params, "items") else {},
        "max_active_runs": dag.max_active_runs,
        "catchup": dag.catchup,
        "retries": dag.default_args.get("retries"),
        "pools": sorted({t.pool for t in dag.tasks}),
        "conn_ids": sorted({v for t in dag.tasks for a, v in vars(t).items() if a.endswith("conn_id") and isinstance(v, str)}),
    }
print(json.dumps(report, default=str))
