"""A new prediction task is one declaration, one migration and its suites: this test declares one here (no edit
anywhere else in jobcast) and runs it through train -> score -> validate -> publish, read back by a web app."""

import json

import psycopg2
import pytest

from jobcast import tasks
from jobcast.models import registry
from jobcast.tasks import Task

from conftest import REPO, make_ctx
from jobs import publish, score, train, validate

pytestmark = pytest.mark.e2e


class Disclosure(Task):
    """Will the posting show its salary? A binary booster over the structured features: the smallest task."""

    name = "disclosure"
    order = 90
    table = "disclosure_rows"
    view = "job_disclosure"
    outputs = {"p_disclosed": "double"}
    example = "select p_disclosed from predictions.job_disclosure where job_id = $1;"
    drift_column = "p_disclosed"
    numeric = ("posting_age_days", "title_len", "desc_len")  # pay is often disclosed days after posting
    categorical = ("prefecture", "employment_type", "category_filed")
    objective = "binary"
    gate_metric = ("logloss", False)
    default_params = {"learning_rate": 0.1, "num_leaves": 7, "min_data_in_leaf": 20, "num_boost_round": 200,
                      "early_stopping_rounds": 20, "seed": 7}
    suites_dir = None  # set by the test: its suites live in the test's own directory, not in expectations/

    def labelled(self):
        from pyspark.sql import functions as F

        return F.lit(True)  # every posting either shows its salary or not

    def fit(self, df, schema, params):
        from jobcast.models import task_models as tm

        y = df["salary_offered"].notna().to_numpy(dtype=float)
        booster = tm.fit_booster(tm.lgb_params(params, objective=self.objective), schema.dense(df),
                                 schema.categorical_indices, y, None, params, *tm.split(df, "posted_at"))
        return {"model": booster}, {}

    def predict(self, model, df, num_threads):
        import numpy as np
        import pandas as pd

        # The raw score and its reasons in one pass (jobcast.models.reasons); a binary booster's output is its sigmoid.
        logit, reasons = model.explain(model.schema.dense(df), df, None, "logit of showing the salary", num_threads=num_threads)
        return pd.DataFrame({"job_id": df["job_id"].astype("int64").to_numpy(),
                             "p_disclosed": np.clip(1 / (1 + np.exp(-logit)), 1e-6, 1 - 1e-6), "reasons": reasons})

    def metrics(self, holdout, pred):
        import numpy as np

        y = holdout["salary_offered"].notna().to_numpy(dtype=float)
        p = pred["p_disclosed"].to_numpy()
        return {"logloss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))}

    def baseline(self, train, holdout):
        import numpy as np

        rate = float(train["salary_offered"].notna().mean())
        y = holdout["salary_offered"].notna().to_numpy(dtype=float)
        return {"baseline_logloss": float(-np.mean(y * np.log(rate) + (1 - y) * np.log(1 - rate)))}

    def suite(self, root, kind):
        return self.suites_dir / f"{kind}_{self.name}.json"


MIGRATION = """
create table jobcast_internal.disclosure_rows (
    batch_id    bigint not null,
    job_id      bigint not null,
    p_disclosed double precision not null check (p_disclosed > 0 and p_disclosed < 1),
    reasons     jsonb
) partition by list (batch_id);
create unique index disclosure_rows_batch_job on jobcast_internal.disclosure_rows (batch_id, job_id);
create view predictions.job_disclosure as
select r.job_id, r.p_disclosed, r.batch_id, b.model_version, b.logical_date as prediction_date, r.reasons
from jobcast_internal.disclosure_rows r
join predictions.batches b on b.batch_id = r.batch_id
where r.batch_id = (select c.batch_id from jobcast_internal.current_batch c where c.task = 'disclosure');
comment on view predictions.job_disclosure is 'Probability that the posting shows its salary.';
"""

SUITE = {"name": "predictions_disclosure", "notes": "the extra task's gate", "expectations": [
    {"type": "expect_table_columns_to_match_set",
     "kwargs": {"column_set": ["job_id", "p_disclosed", "reasons", "reasons_consistent"], "exact_match": True}},
    {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "reasons_consistent", "value_set": [True]}},
    {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "job_id"}},
    {"type": "expect_column_values_to_be_between", "kwargs": {"column": "p_disclosed", "min_value": 0, "max_value": 1}},
    {"type": "expect_table_row_count_to_equal", "kwargs": {"value": {"$PARAMETER": "expected_rows"}}}]}
CHECKPOINT = {"name": "predictions_disclosure", "validation_definitions": [{"name": "predictions_disclosure", "id": None}],
              "actions": [{"type": "update_data_docs", "name": "data_docs", "site_names": []}],
              "result_format": {"result_format": "SUMMARY", "partial_unexpected_count": 20}}


@pytest.fixture
def disclosure(tmp_path):
    suites = tmp_path / "suites"
    (suites / "checkpoints").mkdir(parents=True)
    (suites / "predictions_disclosure.json").write_text(json.dumps(SUITE))
    (suites / "checkpoints" / "predictions_disclosure.json").write_text(json.dumps(CHECKPOINT))
    declared = Disclosure()
    declared.suites_dir = suites
    tasks.register(declared)
    yield declared
    tasks.unregister(declared.name)


def test_a_task_declared_in_one_module_runs_train_score_validate_publish(champions, disclosure, conn, db_url):
    settings = champions  # the window's raw snapshots and features (the three built-in champions come along)
    with conn.cursor() as cur:
        cur.execute(MIGRATION)  # the task's one migration
    assert "disclosure" in tasks.names()  # and so in the CLI's choices and the DAGs' branches
    ctx = make_ctx(settings)

    trained = train.run(ctx, task="disclosure")
    assert trained.ids["promoted"]
    meta = registry.read_metadata(registry.champion_dir(settings, "disclosure"))
    assert meta["params"]["num_leaves"] == 7  # the declaration's default params (params.yaml has no train.disclosure)
    assert 0 < meta["metrics"]["logloss"] < 1 and meta["metrics"]["baseline_logloss"] > 0  # its own metrics and baseline
    # Its DVC metrics follow the run's directories: never into the checkout's metrics/.
    assert (settings.metrics_dir / "train" / "disclosure.json").is_file() and settings.metrics_dir != REPO / "metrics"
    assert not (REPO / "metrics" / "train" / "disclosure.json").exists()

    scored = score.run(ctx, task="disclosure")  # Spark's Python workers get the declaration by value
    validate.run(ctx, layer="features")
    validate.run(ctx, task="disclosure")
    published = publish.run(ctx, task="disclosure")
    assert published.rows == scored.rows > 0

    app = psycopg2.connect(db_url)  # a web app's connection
    with app, app.cursor() as cur:
        cur.execute("select count(*), min(p_disclosed), max(p_disclosed), count(distinct batch_id), "
                    "min(model_version) from predictions.job_disclosure")
        n, lo, hi, batches, model = cur.fetchone()
        cur.execute("select p.p_disclosed, j.salary_min is not null from predictions.job_disclosure p "
                    "join app.job_postings j using (job_id)")
        predicted, actual = zip(*cur.fetchall())
    app.close()
    assert n == scored.rows and 0 < lo <= hi < 1 and batches == 1 and model == meta["version"]
    with psycopg2.connect(db_url) as app2, app2.cursor() as cur:
        cur.execute("select reasons from predictions.job_disclosure limit 1")
        reasons = cur.fetchone()[0]
    app2.close()
    assert reasons["top"] and reasons["top"][0]["name"]  # its reasons, named from its declared features
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(actual, predicted) > 0.6  # it learned who shows pay (employment type, seniority, category)


def test_a_declaration_must_be_complete_and_new(disclosure):
    from jobcast.errors import ConfigError

    class Clash(Disclosure):
        pass

    with pytest.raises(ConfigError, match="declared twice"):
        tasks.register(Clash())
    with pytest.raises(ConfigError, match="unknown prediction task"):
        tasks.get("nope")
