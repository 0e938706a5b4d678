"""What a prediction task declares: the one place the pipeline learns what a task is.

A task is a subclass of Task in its own module under jobcast.tasks (or in a board's own package, listed in
JOBCAST_TASK_MODULES), one SQL migration (its table and view, with the column comments web-app developers read)
and its GX suites (expectations/predictions_<name>.json, and drift_<name>.json for a drift gate). Training,
scoring, validation, publishing, the CLI's choices, the DAGs' branches and the generated docs read the
declaration; nothing else names a task.

This module is imported at DAG parse time: nothing heavy at module level (pandas, numpy, Spark and LightGBM
are imported inside the methods that need them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import pandas as pd

    from jobcast.context import RunContext
    from jobcast.models.matrix import FeatureSchema
    from jobcast.models.task_models import Predictor

REASONS = "reasons"  # every task's column: the strongest contributions behind each prediction (JSON)
# Spark DDL type of a prediction column -> the pandas dtype of an empty batch.
_PANDAS = {"long": "int64", "double": "float64", "string": "object"}


@dataclass(frozen=True)
class Source:
    """A source table a task reads besides the contract's job_postings and events (docs/source-contract.md):
    optional for a board (when the table does not exist, the day's snapshot of it is empty). extract snapshots
    it with the others, in the same transaction, to raw/<name>/dt=D."""
    query: str               # SQL over {source}.<table>; may use %(day_start)s and %(day_end)s (the logical day)
    types: dict[str, str]    # column -> "integer", "text" or "timestamptz"


# Training params every task takes from train.<key> unless its own params set them (jobcast.models.task_models):
# the rows a text model learns from, and the rows above which a booster is not refitted on all of them.
SHARED_TRAIN_PARAMS = ("text_max_rows", "refit_max_rows")


@dataclass(frozen=True)
class Quality:
    """The live batch against the generator's truth (`jobcast run` prints it; schema truth exists only on a
    generated board): a label, SQL over the view aliased p, the truth tables it needs, and a format of
    {value} (and {currency}, params.yaml board.currency)."""
    label: str
    sql: str
    needs: tuple[str, ...]
    fmt: str


class Task:
    """One prediction task. Subclasses set the class attributes and implement fit/predict/metrics/baseline."""

    # ---- identity and serving (the migration creates the table and view these name)
    name: ClassVar[str]
    order: ClassVar[int] = 100                 # position in TASKS (the CLI's and DAGs' default order)
    table: ClassVar[str]                       # jobcast_internal.<table>, list-partitioned by batch_id
    view: ClassVar[str]                        # predictions.<view>: the live batch, what web apps read
    outputs: ClassVar[dict[str, str]]          # prediction columns after job_id -> Spark type (long, double, string)
    example: ClassVar[str]                     # a one-line lookup for the generated docs
    drift_column: ClassVar[str | None] = None  # what the drift gate (its drift suite, if any) compares with the live batch
    drift_categorical: ClassVar[bool] = False  # shares of values (True) or quantile bins of a number (False)

    # ---- learning
    unit: ClassVar[str] = "posting"            # "posting": one row per posting (its newest snapshot in the window);
                                               # "posting_day": one row per (posting, day) with views that day
    numeric: ClassVar[tuple[str, ...]] = ()    # feature columns the model may use, by kind (of features/)
    categorical: ClassVar[tuple[str, ...]] = ()
    objective: ClassVar[str]                   # the LightGBM objective of its booster
    default_params: ClassVar[dict[str, Any]] = {}  # its training params when params.yaml has no params_key entry
    gate_metric: ClassVar[tuple[str, bool]]    # (holdout metric the promotion gate compares, higher is better)
    quality: ClassVar[Quality | None] = None
    sources: ClassVar[dict[str, Source]] = {}  # extra (optional) source tables it reads, by name

    @property
    def params_key(self) -> str:
        """Its training params in params.yaml (LightGBM's and the text models')."""
        return f"train.{self.name}"

    def train_params(self, settings) -> dict[str, Any]:
        """The shared train.<key> of SHARED_TRAIN_PARAMS, then default_params, then params.yaml's params_key
        merged over them (key by key): a task may set its own text_max_rows."""
        from jobcast.errors import ConfigError

        try:
            configured = settings.param(self.params_key)
        except ConfigError:
            if not self.default_params:
                raise
            configured = {}
        if not isinstance(configured, dict):
            raise ConfigError(f"params.yaml: {self.params_key} = {configured!r}: expected a mapping of training params")
        shared = {}
        for key in SHARED_TRAIN_PARAMS:
            try:
                shared[key] = settings.param(f"train.{key}")
            except ConfigError:  # a params.yaml from before the key: no bound
                shared[key] = None
        return {**shared, **self.default_params, **configured}

    @property
    def qualified_view(self) -> str:
        return f"predictions.{self.view}"

    @property
    def columns(self) -> tuple[str, ...]:
        """The prediction Parquet's columns = the table's columns after batch_id: job_id, the outputs, and the
        reasons every task gives (jobcast.models.reasons; last in the view, after the lineage columns)."""
        return ("job_id", *self.outputs, REASONS)

    @property
    def spark_schema(self) -> str:
        return ", ".join(f"{c} {t}" for c, t in {"job_id": "long", **self.outputs, REASONS: "string"}.items())

    def suite(self, root: Path, kind: str) -> Path:
        """Its GX suite of a kind ("predictions" or "drift"); a drift suite is optional."""
        return root / "expectations" / f"{kind}_{self.name}.json"

    def empty(self) -> "pd.DataFrame":
        import pandas as pd

        return pd.DataFrame({c: pd.Series([], dtype=_PANDAS[t])
                             for c, t in {"job_id": "long", **self.outputs, REASONS: "string"}.items()})

    # ---- which rows it learns from
    def labelled(self):
        """Spark condition on a feature row: it carries this task's label (posting tasks)."""
        raise NotImplementedError

    def window_rows(self, ctx: "RunContext", frame, days: list, first_holdout_day, labelled: bool = True) -> Any:
        """The training rows of the window's feature frame (days: the window's dates), with the HOLDOUT column
        true on the time-based holdout (from first_holdout_day on). Default: each labelled posting once, as of
        its newest snapshot (labelled=False: every posting, for the quality bench); the holdout is the postings
        posted from first_holdout_day on."""
        from pyspark.sql import functions as F

        from jobcast.models.task_models import HOLDOUT
        from jobcast.sources import day_bounds

        rows = frame.join(F.broadcast(newest_days(frame)), ["job_id", "logical_date"], "left_semi")
        rows = rows.where(self.labelled()) if labelled else rows
        start, _ = day_bounds(first_holdout_day, ctx.settings.param("run.timezone"))
        return rows.withColumn(HOLDOUT, F.col("posted_at") >= F.lit(start))

    def trainable(self, ctx: "RunContext") -> str | None:
        """None when the board gives this task labels on ctx's date (after extract), else why not: a task whose
        labels come from an optional source table the board does not fill. `jobcast run` and the DAGs skip
        such a task while it has no champion, saying why; `jobcast train` fails with the reason."""
        return None

    def skipped(self, ctx: "RunContext", step: str) -> str | None:
        """Why this task's step does not run on ctx's date, or None: an untrainable task (trainable) is not
        trained, and while it has no champion it is not scored, validated or published either. The one rule
        `jobcast run` and the DAGs' tasks both follow."""
        why_not = self.trainable(ctx)
        if not why_not:
            return None
        from jobcast.models import registry

        if step == "train" or registry.champion(ctx.settings, self.name) is None:
            return f"{self.name}: nothing to train it on: {why_not}"
        return None

    # ---- the model
    def fit(self, df: "pd.DataFrame", schema: "FeatureSchema", params: dict[str, Any]) -> tuple[dict, dict]:
        """(boosters by name, extras saved next to them: labels, text models, offsets...)."""
        raise NotImplementedError

    def predict(self, model: "Predictor", df: "pd.DataFrame", num_threads: int) -> "pd.DataFrame":
        """The prediction rows (job_id and the outputs) of the feature rows df."""
        raise NotImplementedError

    def metrics(self, holdout: "pd.DataFrame", pred: "pd.DataFrame") -> dict[str, Any]:
        raise NotImplementedError

    def baseline(self, train: "pd.DataFrame", holdout: "pd.DataFrame") -> dict[str, float]:
        raise NotImplementedError

    def truth_quality(self, bench) -> list[dict[str, Any]]:
        """Rows of bench/quality.py on a generated board: the champion next to the Bayes limit (from the
        generator's truth) and a baseline, on the training holdout. `bench` gives: model (the champion's
        Predictor), training() -> (train, holdout) frames, window(labelled) -> the window's rows with the
        HOLDOUT column, truth(sql) -> a frame of truth.* rows, curves (a dict of DVC plots to write), and
        row(metric, model, bayes, baseline, gap, goal, n, ok) -> one table row. Default: no rows."""
        return []

    # ---- its predictions gate
    def suite_parameters(self, settings, preds: Path, manifest: dict, df: "pd.DataFrame") -> tuple["pd.DataFrame", dict]:
        """The frame its predictions suite checks (with any derived columns) and the suite's runtime parameters."""
        return df, {}

    def manifest_extras(self, model: "Predictor") -> dict[str, Any]:
        """What scoring records in the predictions manifest for the gate (e.g. the category labels)."""
        return {}

    def __repr__(self) -> str:
        return f"<task {self.name}>"


def newest_days(frame):
    """(job_id, logical_date) of each posting's newest row in a window's feature frame (a posting has one row a
    day). Computed from those two columns alone, so the rows can be picked by a broadcast semi-join: a window
    function over the frame shuffled every row with its text terms (6 GB at 100k open postings, 60 GB at 1M)
    to keep one row per posting."""
    from pyspark.sql import functions as F

    return frame.groupBy("job_id").agg(F.max("logical_date").alias("logical_date"))
