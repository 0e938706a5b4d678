"""salary: the annual salary of postings that hide it, as a median and an 80% interval.

A booster on log salary over the structured features, a ridge text model's log-salary guess, and a text
classifier's guess of the category (the filed one is wrong or missing for some postings, and pay depends on
it most); the filed category is hidden from a share of the training rows (category_dropout), so a board that
leaves it empty gets the text guess, not a broken model. p10/p90 are p50 times the 10%/90% quantiles of the
log residuals on rows the booster did not fit (split-conformal), so the interval covers ~80% of actual
salaries by construction. Learns from postings with a plausible disclosed salary (features' salary_label).
"""

from __future__ import annotations

from jobcast.tasks.base import Quality, Task

QUANTILES = {"p10": 0.1, "p50": 0.5, "p90": 0.9}


class Salary(Task):
    name = "salary"
    order = 10
    table = "salary_rows"
    view = "job_salary"
    outputs = {"salary_p10": "double", "salary_p50": "double", "salary_p90": "double"}
    example = "select salary_p10, salary_p50, salary_p90 from predictions.job_salary where job_id = $1;"
    drift_column = "salary_p50"
    numeric = ("title_len", "desc_len")
    categorical = ("prefecture", "employment_type", "category_filed")  # never salary_offered: it is the label
    objective = "regression"
    gate_metric = ("mae", False)
    quality = Quality("salary_mae_vs_truth",
                      "select avg(abs(p.salary_p50 - t.salary)) from {view} p join truth.job_salary t using (job_id)",
                      ("truth.job_salary",), "{value:,.0f} {currency}")

    def labelled(self):
        from pyspark.sql import functions as F

        return F.col("salary_label") > 0

    def fit(self, df, schema, params):
        import numpy as np

        from jobcast.models import task_models as tm

        y = np.log(df["salary_label"].to_numpy(dtype=float))
        filed = df["category_filed"].notna().to_numpy()
        labels = tm.labels_of(df["category_filed"], self.name)
        X, categorical, models, names = tm.stack(schema, df, params, {
            "text_salary": {"kind": "regressor", "y": y},
            "category_hint": {"kind": "classifier", "rows": filed, "labels": labels,
                              "y": tm.category_codes(df["category_filed"][filed], labels)},
        })
        fit_rows, stop_rows = tm.split(df, "posted_at")
        lgb_params = tm.lgb_params(params, objective=self.objective)
        booster = tm.fit_booster(lgb_params, X, categorical, y, None, params, fit_rows, stop_rows)
        # Split-conformal interval: residual quantiles on the tail rows the booster did not fit.
        resid = y[stop_rows] - booster.predict(X[stop_rows], num_iteration=booster.best_iteration or None)
        offsets = {q: float(np.quantile(resid, a)) for q, a in QUANTILES.items() if q != "p50"}
        # The offsets above stay honest: they were measured before a refit fits the tail.
        booster = tm.refit_booster(lgb_params, X, categorical, y, booster, params)
        return {"model": booster}, {"text_models": models, "stacked": names, "log_offsets": offsets,
                                    "calibration_rows": int(len(stop_rows))}

    def predict(self, model, df, num_threads):
        import numpy as np
        import pandas as pd

        counts = model.schema.text_counts(df)
        log_p50, reasons = model.explain(model.matrix(df, counts), df, counts, "log salary (p50)", num_threads=num_threads)
        off = model.info["log_offsets"]
        return pd.DataFrame({"job_id": df["job_id"].astype("int64").to_numpy(),
                             "salary_p10": np.exp(log_p50 + min(off["p10"], 0.0)), "salary_p50": np.exp(log_p50),
                             "salary_p90": np.exp(log_p50 + max(off["p90"], 0.0)), "reasons": reasons})

    def metrics(self, holdout, pred):
        from jobcast.models.task_models import salary_metrics

        return salary_metrics(holdout["salary_label"].to_numpy(dtype=float), pred)

    def baseline(self, train, holdout):
        """The filed category x prefecture median salary."""
        import numpy as np

        cell = train.groupby(["category_filed", "prefecture"], dropna=False)["salary_label"].median()
        guess = holdout.join(cell.rename("b"), on=["category_filed", "prefecture"])["b"].fillna(train["salary_label"].median())
        return {"baseline_mae": float(np.mean(np.abs(holdout["salary_label"].to_numpy() - guess.to_numpy())))}

    def truth_quality(self, bench):
        """MAE of p50 against the disclosed salaries of the holdout postings (Bayes: the truth median of each
        posting's salary distribution as the prediction) and p10-p90 coverage (goal 75-85%)."""
        import numpy as np
        import pandas as pd

        from jobcast.generate.core import SALARY_NOISE_SIGMA
        from jobcast.models.task_models import salary_metrics

        tr, h = bench.training()
        h = h.merge(bench.truth("select job_id, salary from truth.job_salary"), on="job_id")
        y, pred = h["salary_label"].to_numpy(float), bench.model.predict(h, num_threads=0)
        m = salary_metrics(y, pred)
        z = 1.2815515655446004
        bayes = salary_metrics(y, pd.DataFrame({"salary_p10": h["salary"] * np.exp(-z * SALARY_NOISE_SIGMA), "salary_p50": h["salary"],
                                                "salary_p90": h["salary"] * np.exp(z * SALARY_NOISE_SIGMA)}))
        base = self.baseline(tr, h)["baseline_mae"]
        return [bench.row("MAE of p50", m["mae"], bayes["mae"], base, m["mae"] / bayes["mae"] - 1, "<= +5%", len(h),
                          m["mae"] <= 1.05 * bayes["mae"]),
                bench.row("p10-p90 coverage", m["coverage_p10_p90"], bayes["coverage_p10_p90"], float("nan"),
                          m["coverage_p10_p90"] - 0.80, "0.75-0.85", len(h), 0.75 <= m["coverage_p10_p90"] <= 0.85)]

    def suite_parameters(self, settings, preds, manifest, df):
        bounds = settings.param("validate.salary")
        return df, {"salary_min": float(bounds["min"]), "salary_max": float(bounds["max"])}


TASK = Salary()
