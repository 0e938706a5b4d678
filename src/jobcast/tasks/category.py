"""category: the job category of postings filed wrongly or not at all, with the three most likely.

One multiclass booster over the filed categories (unfiled postings are not labels) on the text classifier's
per-class scores; it never sees the filed category as a feature, so it can correct it. Its probabilities are
blended with the calibrated text classifier's, the share chosen on the early-stopping tail
(task_models.blend_weight); above max_booster_classes the text classifier alone predicts.
"""

from __future__ import annotations

import json

from jobcast.errors import InputDataError
from jobcast.tasks.base import Quality, Task

TOP3_DERIVED = ("top3_well_formed", "top3_prob_sum", "top3_first_is_category", "top3_descending")


class Category(Task):
    name = "category"
    order = 20
    table = "category_rows"
    view = "job_category"
    outputs = {"category": "string", "probability": "double", "top3": "string"}
    example = ("select category, probability, top3 -> 1 ->> 'category' as runner_up from predictions.job_category "
               "where job_id = $1;")
    drift_column = "category"
    drift_categorical = True
    numeric = ("title_len", "desc_len")
    categorical = ("prefecture", "employment_type")  # never category_filed: it is the label
    objective = "multiclass"
    gate_metric = ("accuracy", True)
    quality = Quality("category_accuracy_vs_truth",
                      "select avg((p.category = t.category)::int) from {view} p join truth.job_category t using (job_id)",
                      ("truth.job_category",), "{value:.3f}")

    def labelled(self):
        from pyspark.sql import functions as F

        return F.col("category_filed").isNotNull()

    def fit(self, df, schema, params):
        from jobcast.models import task_models as tm

        labels = tm.labels_of(df["category_filed"], self.name)
        codes = tm.category_codes(df["category_filed"], labels)
        X, categorical, models, names = tm.stack(schema, df, params, {
            "text_classes": {"kind": "classifier", "y": codes, "labels": labels}})
        if len(labels) > int(params.get("max_booster_classes", 100)):
            # LightGBM grows one tree per class and round: with hundreds of classes the linear model alone scores.
            return {}, {"labels": labels, "text_models": models, "stacked": names, "final": "text_classes"}
        lgb_params = tm.lgb_params(params, objective=self.objective, num_class=len(labels))
        fit_rows, stop_rows = tm.split(df, "posted_at")
        booster = tm.fit_booster(lgb_params, X, categorical, codes.astype(float), None, params, fit_rows, stop_rows)
        width = len(schema.numeric) + len(schema.categorical)  # the stacked scores follow the dense columns
        blend = tm.blend_weight(booster, X, stop_rows, codes, models["text_classes"], list(range(width, width + len(names))))
        extras = {"labels": labels, "text_models": models, "stacked": names, "blend": blend}
        if blend["booster_weight"] == 0.0:  # the booster adds nothing the text model does not: it is not kept
            return {}, {**extras, "final": "text_classes"}
        booster = tm.refit_booster(lgb_params, X, categorical, codes.astype(float), booster, params)
        return {"model": booster}, extras

    def probabilities(self, model, df, num_threads: int = 1, counts=None, X=None, leaves=None):
        """Class probabilities (n x labels); with the booster's leaves (PathExplainer.leaves), from them: the
        reasons need the leaves anyway, so the booster is not run twice."""
        from jobcast.models.text_model import softmax

        counts = model.schema.text_counts(df) if counts is None else counts
        text = model.text_models["text_classes"]
        if "model" not in model.boosters:  # the linear text model is the final model (many classes, or it won the blend)
            return text.probabilities(counts)
        if leaves is not None:
            p = softmax(model.explainer("model", len(model.labels)).raw(leaves))
        else:
            X = model.matrix(df, counts) if X is None else X
            p = model.boosters["model"].predict(X, num_threads=num_threads).reshape(len(df), len(model.labels))
        w = float(model.info.get("blend", {}).get("booster_weight", 1.0))
        return p if w >= 1.0 else w * p + (1 - w) * text.probabilities(counts)

    def predict(self, model, df, num_threads):
        import numpy as np
        import pandas as pd

        from jobcast.models.reasons import linear_reasons

        counts = model.schema.text_counts(df)
        X = model.matrix(df, counts) if "model" in model.boosters else None
        leaves = (model.explainer("model", len(model.labels)).leaves(X, num_threads)
                  if model.with_reasons and X is not None else None)
        proba = self.probabilities(model, df, num_threads, counts, X, leaves)
        top = np.argsort(-proba, axis=1, kind="stable")[:, :3]
        # Reasons for the predicted category: the booster's score of that class (softmax input), or, when the
        # text model alone predicts, its linear score of that class.
        if not model.with_reasons:
            reasons = None
        elif X is not None:
            reasons = model.explain(X, df, counts, "booster score of the category", klass=top[:, 0], leaves=leaves)[1]
        else:
            reasons = linear_reasons(model.text_models["text_classes"], top[:, 0], counts, model.terms,
                                     "text model score of the category", model.names)
        labels = np.array(model.labels, dtype=object)
        top3 = [json.dumps([{"category": labels[j], "probability": round(float(p[j]), 6)} for j in row], ensure_ascii=False)
                for row, p in zip(top, proba)]
        return pd.DataFrame({"job_id": df["job_id"].astype("int64").to_numpy(), "category": labels[top[:, 0]].astype(str),
                             "probability": proba[np.arange(len(df)), top[:, 0]], "top3": top3, "reasons": reasons})

    def metrics(self, holdout, pred):
        from jobcast.models.task_models import category_metrics

        return category_metrics(holdout["category_filed"].to_numpy(), pred["category"].to_numpy())

    def baseline(self, train, holdout):
        """The majority class."""
        import numpy as np

        majority = train["category_filed"].mode().iloc[0]
        return {"baseline_accuracy": float(np.mean(holdout["category_filed"].to_numpy() == majority))}

    def truth_quality(self, bench):
        """Accuracy against the TRUE category of every holdout posting, filed or not (Bayes: the generator's
        bayes_category, the best guess from the posting's content), and macro-F1."""
        import numpy as np

        from jobcast.models.task_models import HOLDOUT, category_metrics

        latest = bench.window(labelled=False)
        is_h = latest[HOLDOUT].to_numpy()
        h, tr = latest[is_h], latest[~is_h & latest["category_filed"].notna()]
        h = h.merge(bench.truth("select job_id, category as true_category, bayes_category from truth.job_category"), on="job_id")
        pred = bench.model.predict(h, num_threads=0)["category"].to_numpy()
        true = h["true_category"].to_numpy()
        acc = float(np.mean(pred == true))
        bayes = float(np.mean(h["bayes_category"].to_numpy() == true))
        base = float(np.mean(true == tr["category_filed"].mode().iloc[0]))
        f1 = category_metrics(true, pred)["macro_f1"]
        nan = float("nan")
        return [bench.row("accuracy vs true category", acc, bayes, base, acc - bayes, ">= -0.03", len(h), acc >= bayes - 0.03),
                bench.row("macro-F1 vs true category", f1, nan, nan, nan, "", len(h), True)]

    def manifest_extras(self, model):
        return {"labels": model.labels}

    def suite_parameters(self, settings, preds, manifest, df):
        labels = manifest.get("labels")
        if not isinstance(labels, list) or not labels:
            raise InputDataError(f"{preds}/_manifest.json: no \"labels\" list; expected the category model's labels "
                                 "(written by `jobcast score --task category`)")
        return add_top3_checks(df), {"labels": [str(x) for x in labels]}


def _top3_entries(text) -> tuple[list[str], list[float]] | None:
    """(categories, probabilities) when top3 is a JSON list of exactly 3 {category: non-empty text,
    probability: number in [0, 1]}; None otherwise."""
    try:
        entries = json.loads(text)
    except (TypeError, ValueError):
        return None
    if not isinstance(entries, list) or len(entries) != 3:
        return None
    names, probs = [], []
    for e in entries:
        if not isinstance(e, dict):
            return None
        name, prob = e.get("category"), e.get("probability")
        if not isinstance(name, str) or not name or isinstance(prob, bool) or not isinstance(prob, (int, float)) \
                or not 0 <= prob <= 1:
            return None
        names.append(name)
        probs.append(float(prob))
    return names, probs


def add_top3_checks(df):
    """GX has no expectation on values inside JSON: derive columns from top3 that the suite can check.

    top3_well_formed: a JSON list of exactly three {category: non-empty text, probability: 0..1}
    (GX's expect_column_values_to_match_json_schema does this too, but builds a validator per row:
    1.6 ms a row, 20 s for 12k postings, half an hour for a million);
    top3_prob_sum: sum of the probabilities (NaN, i.e. null, when top3 is not well formed);
    top3_first_is_category: the first entry's category equals the row's category;
    top3_descending: the probabilities never increase down the list (both null when top3 is not well formed)."""
    clash = [c for c in TOP3_DERIVED if c in df.columns]
    if clash:
        raise InputDataError(f"category predictions have columns {clash}, which validation derives itself; "
                             "expected only job_id, category, probability, top3")
    ok, sums, first, desc = [], [], [], []
    for category, text in zip(df["category"], df["top3"]):
        parsed = _top3_entries(text)
        ok.append(parsed is not None)
        if parsed is None:  # null: only top3_well_formed (and the sum's not-null check) name the problem
            sums.append(float("nan"))
            first.append(None)
            desc.append(None)
            continue
        names, probs = parsed
        sums.append(sum(probs))
        first.append(names[0] == category)
        desc.append(all(a >= b for a, b in zip(probs, probs[1:])))
    return df.assign(top3_well_formed=ok, top3_prob_sum=sums, top3_first_is_category=first, top3_descending=desc)


TASK = Category()
