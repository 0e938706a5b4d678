"""The prediction tasks the serving side knows: where each is stored, which view serves it, its columns.

The one source of truth for publish (store.py), the drift gate (jobs/validate.py), reports and the docs.
The SQL behind these names is in sql/migrations/ (0001, 0003); a test checks that the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobcast.errors import ConfigError


@dataclass(frozen=True)
class TaskSpec:
    name: str
    table: str                 # jobcast_internal.<table>: partitioned by list (batch_id), one partition per batch
    view: str                  # predictions.<view>: the live batch, what web apps read
    columns: tuple[str, ...]   # the prediction Parquet's columns = the table's columns after batch_id (job_id first)
    drift_column: str          # what the drift gate compares with the live batch
    categorical: bool          # drift over category shares (True) or over quantile bins of a number (False)
    example: str               # a one-line lookup for the docs

    @property
    def qualified_view(self) -> str:
        return f"predictions.{self.view}"


SPECS: dict[str, TaskSpec] = {
    "salary": TaskSpec(
        name="salary", table="salary_rows", view="job_salary",
        columns=("job_id", "salary_p10", "salary_p50", "salary_p90"), drift_column="salary_p50", categorical=False,
        example="select salary_p10, salary_p50, salary_p90 from predictions.job_salary where job_id = $1;"),
    "category": TaskSpec(
        name="category", table="category_rows", view="job_category",
        columns=("job_id", "category", "probability", "top3"), drift_column="category", categorical=True,
        example="select category, probability, top3 -> 1 ->> 'category' as runner_up from predictions.job_category "
                "where job_id = $1;"),
    "cvr": TaskSpec(
        name="cvr", table="cvr_rows", view="job_cvr",
        columns=("job_id", "cvr"), drift_column="cvr", categorical=False,
        example="select cvr from predictions.job_cvr where job_id = $1;"),
}


def spec(task: str) -> TaskSpec:
    try:
        return SPECS[task]
    except KeyError:
        raise ConfigError(f"task {task!r}: unknown prediction task; expected one of {sorted(SPECS)}") from None
