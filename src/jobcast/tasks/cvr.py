"""cvr: the probability that one view of a posting becomes an application, on the prediction date.

One cross-entropy booster on (posting, day) rows: label = applies / views of that day, weight = views, so the
loss is the per-view Bernoulli log-loss and the score is a probability. Its text model learns each posting's
smoothed apply rate (folds by posting). Learns from every (posting, day) of the window with at least one view,
the day's views and applies taken from that day's raw events.
"""

from __future__ import annotations

from jobcast.tasks.base import Quality, Task

EVENT_NUMERIC = ("views_7d", "applies_7d", "views_28d", "applies_28d", "job_cvr_28d", "company_cvr_28d", "category_cvr_28d")


class Cvr(Task):
    name = "cvr"
    order = 30
    table = "cvr_rows"
    view = "job_cvr"
    outputs = {"cvr": "double"}
    example = "select cvr from predictions.job_cvr where job_id = $1;"
    drift_column = "cvr"
    unit = "posting_day"
    numeric = ("posting_age_days", "title_len", "desc_len", "salary_offered", *EVENT_NUMERIC)
    categorical = ("prefecture", "employment_type", "category_filed")
    objective = "cross_entropy"
    gate_metric = ("logloss", False)
    # The truth is per posting and day (the CVR changes as a posting ages): compare the batch's own day.
    quality = Quality("cvr_mae_vs_truth",
                      "select avg(abs(p.cvr - t.cvr)) from {view} p "
                      "join truth.job_cvr_daily t on t.job_id = p.job_id and t.day = p.prediction_date",
                      ("truth.job_cvr_daily",), "{value:.4f}")

    def window_rows(self, ctx, frame, days, first_holdout_day, labelled=True):
        """(posting, day) rows with at least one view that day, the day's views and applies joined from its
        raw events; the holdout is the days from first_holdout_day on."""
        from pyspark.sql import functions as F

        from jobcast.models.task_models import HOLDOUT

        rows = (frame.join(day_outcomes(ctx, days), ["job_id", "logical_date"], "left")
                .fillna(0.0, subset=["views", "applies"]).where(F.col("views") > 0))
        return rows.withColumn(HOLDOUT, F.col("logical_date") >= F.lit(first_holdout_day))

    def fit(self, df, schema, params):
        import numpy as np

        from jobcast.models import task_models as tm

        views = df["views"].to_numpy(dtype=float)
        applies = np.minimum(df["applies"].to_numpy(dtype=float), views)
        # A sampled row stands for 1/fraction rows (jobs.train.load_training): its views count that many times.
        scale = df[tm.SAMPLE_WEIGHT].to_numpy(dtype=float) if tm.SAMPLE_WEIGHT in df else np.ones(len(df))
        # The text model learns each posting's smoothed apply rate (logit) from one row per posting, weighted by
        # views: the row that carries the posting's text terms (training data keeps them on one row per posting).
        jobs = df["job_id"].to_numpy()
        has_text = df[schema.text_column].notna().to_numpy()
        order = np.lexsort((~has_text, jobs))  # per posting, a row with text first
        _, first_sorted, inverse = np.unique(jobs[order], return_index=True, return_inverse=True)
        first = order[first_sorted]
        expand = np.empty(len(df), dtype=np.int64)
        expand[order] = inverse
        v_job = np.bincount(expand, weights=views * scale)
        a_job = np.bincount(expand, weights=applies * scale)
        base = applies.sum() / max(views.sum(), 1.0)
        m = float(params.get("text_smoothing_views", 20))
        rate = (a_job + m * base) / (v_job + m)
        X, categorical, models, names = tm.stack(schema, df, params, {  # `first`: one row per posting, in `expand`'s order
            "text_cvr": {"kind": "regressor", "y": np.log(rate / (1 - rate)), "weight": v_job, "rows": first, "expand": expand}})
        booster = tm.fit_booster(tm.lgb_params(params, objective=self.objective), X, categorical, applies / views,
                                 views * scale, params, *tm.split(df, "logical_date"))
        return {"model": booster}, {"text_models": models, "stacked": names}

    def predict(self, model, df, num_threads):
        import numpy as np
        import pandas as pd

        counts = model.schema.text_counts(df)
        logit, reasons = model.explain(model.matrix(df, counts), df, counts, "logit of cvr", num_threads=num_threads)
        p = np.clip(1 / (1 + np.exp(-logit)), 1e-6, 1 - 1e-6)  # cross_entropy's output is the sigmoid of its raw score
        return pd.DataFrame({"job_id": df["job_id"].astype("int64").to_numpy(), "cvr": p, "reasons": reasons})

    def metrics(self, holdout, pred):
        from jobcast.models.task_models import cvr_metrics

        return cvr_metrics(holdout["views"].to_numpy(), holdout["applies"].to_numpy(), pred["cvr"].to_numpy())

    def baseline(self, train, holdout):
        """The training base rate."""
        import numpy as np

        from jobcast.models.task_models import cvr_metrics

        rate = float(train["applies"].sum() / train["views"].sum())
        m = cvr_metrics(holdout["views"].to_numpy(), holdout["applies"].to_numpy(), np.full(len(holdout), rate))
        return {"baseline_logloss": m["logloss"]}

    def truth_quality(self, bench):
        """Per-view log-loss of the holdout days' views (Bayes: truth.job_cvr_daily, the expected applies per view
        of the posting on that day), AUC and the calibration curve."""
        from jobcast.errors import InputDataError
        from jobcast.models.task_models import cvr_metrics

        tr, h = bench.training()
        t = bench.truth("select job_id, day, cvr as true_cvr from truth.job_cvr_daily")
        h = h.merge(t, left_on=["job_id", "logical_date"], right_on=["job_id", "day"], how="left")
        if h["true_cvr"].isna().any():
            raise InputDataError(f"cvr: {int(h['true_cvr'].isna().sum())} holdout rows without truth; regenerate the data")
        p = bench.model.predict(h, num_threads=0)["cvr"].to_numpy()
        m = cvr_metrics(h["views"], h["applies"], p)
        bayes = cvr_metrics(h["views"], h["applies"], h["true_cvr"].to_numpy())
        base = self.baseline(tr, h)["baseline_logloss"]
        bench.curves["calibration_cvr"] = m["calibration_curve"]
        n, nan = int(h["views"].sum()), float("nan")
        return [bench.row("log-loss per view", m["logloss"], bayes["logloss"], base, m["logloss"] / bayes["logloss"] - 1,
                          "<= +3%", n, m["logloss"] <= 1.03 * bayes["logloss"]),
                bench.row("AUC per view", m["auc"], bayes["auc"], 0.5, m["auc"] - bayes["auc"], "", n, True),
                bench.row("calibration error", m["calibration_error"], bayes["calibration_error"], nan, nan, "", n, True)]

    def suite_parameters(self, settings, preds, manifest, df):
        bounds = settings.param("validate.cvr")
        return df, {"cvr_min": float(bounds["min"]), "cvr_max": float(bounds["max"])}


def day_outcomes(ctx, days):
    """Spark frame of views and applies per (posting, day) on each of `days`, from that day's raw events
    snapshot (the labels): its file of the day's own events when it holds one file per day (the other 28 are
    not read), else the whole snapshot."""
    import functools

    from pyspark.sql import functions as F

    from jobcast.errors import InputDataError
    from jobcast.sources import day_bounds, event_file
    from jobcast.storage import partition, read_manifest

    settings, spark = ctx.settings, ctx.spark()
    parts = []
    for day in days:
        path = partition(settings.data_dir, "raw", "events", date=day.isoformat())
        if not path.is_dir():
            raise InputDataError(f"{path}: no raw events for {day}; run `jobcast extract --date {day}` first")
        own = path / event_file(day)
        if day.isoformat() in (read_manifest(path).get("days") or {}) and own.is_file():
            path = own
        start, end = day_bounds(day, settings.param("run.timezone"))
        ev = spark.read.parquet(str(path)).where((F.col("occurred_at") >= F.lit(start)) & (F.col("occurred_at") < F.lit(end)))
        parts.append(ev.groupBy("job_id").agg(
            F.sum(F.when(F.col("event_type") == "view", 1.0).otherwise(0.0)).alias("views"),
            F.sum(F.when(F.col("event_type") == "apply", 1.0).otherwise(0.0)).alias("applies"))
            .withColumn("logical_date", F.lit(day).cast("date")))
    return functools.reduce(lambda a, b: a.unionByName(b), parts)


TASK = Cvr()
