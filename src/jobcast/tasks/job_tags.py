"""job_tags: the job-characteristics tags of a posting (未経験歓迎, 週休2日制, 在宅勤務可 ...), several per posting.

Labels: the tags employers ticked (the optional source table job_posting_tags). Many employers tick none, and
those who tick, tick incompletely: a tag left unticked is not a "no". So this is learning from positive and
unlabelled data, handled the standard way (Elkan & Noto, 2008):
- it learns only from postings that ticked at least one tag (their employers do tick), so an unticked tag
  there is mostly a "no", and the model estimates P(ticked | posting);
- under "ticked at a constant rate c per tag among the true ones", P(tag | posting) = P(ticked | posting) / c,
  with c estimated per tag as the mean predicted P(ticked) of the ticked tags on rows the booster did not fit
  (the e1 estimator); the published probabilities are these, clipped to [0, 1];
- a posting's predicted tags are those with a probability at or above one threshold, chosen to maximise the
  expected micro-F1 under those probabilities on the same rows (no label needed: the probabilities are the
  expectation), and recorded with the model.

Model: a multi-output ridge over the text's TF-IDF (one column per tag, fitted out of fold) stacked into one
binary LightGBM booster over (posting, tag) rows: the structured features, every tag's text score, the tag
itself (categorical) and its own text score. One booster learns what the tags share (a board's style of
ticking, the categories that offer each).
"""

from __future__ import annotations

import json

from jobcast.errors import InputDataError
from jobcast.tasks.base import Quality, Source, Task

TICKED = "tags_ticked"  # the training frame's column: the tags the posting's employer ticked (null: none)


class JobTags(Task):
    name = "job_tags"
    order = 40
    table = "job_tags_rows"
    view = "job_tags"
    outputs = {"tags": "string", "probabilities": "string"}
    example = "select tags, probabilities from predictions.job_tags where job_id = $1;"
    drift_column = None
    numeric = ("title_len", "desc_len")
    categorical = ("prefecture", "employment_type", "category_filed")
    objective = "binary"
    gate_metric = ("micro_f1", True)
    # num_boost_round bounds the scoring cost per posting: every tree is walked once per (posting, tag) row, so a
    # posting costs tags x trees. Uncapped, the 1M bench board's model grew to 654 trees (on its 200k-row cap),
    # which made its full rescore 1.55x slower per posting than at 100k; the demo board's stops at 94.
    default_params = {"learning_rate": 0.1, "num_leaves": 15, "min_data_in_leaf": 50, "feature_fraction": 0.8,
                      "num_boost_round": 400, "early_stopping_rounds": 50, "refit_on_all_rows": False,
                      "text_alpha": [1.0, 10.0], "max_tags": 50, "max_rows": 200000, "seed": 7}
    sources = {"job_posting_tags": Source("select job_id, tag from {source}.job_posting_tags order by job_id, tag",
                                          {"job_id": "integer", "tag": "text"})}
    quality = Quality("job_tags_micro_f1_vs_truth",
                      "with p as (select job_id, tags from {view}), "
                      "hit as (select count(*) n from p join truth.job_tags t using (job_id) "
                      "        where t.present and p.tags @> jsonb_build_array(jsonb_build_object('tag', t.tag))), "
                      "pos as (select count(*) n from p join truth.job_tags t using (job_id) where t.present), "
                      "pred as (select coalesce(sum(jsonb_array_length(tags)), 0) n from p) "
                      "select 2.0 * hit.n / nullif(pos.n + pred.n, 0) from hit, pos, pred",
                      ("truth.job_tags",), "{value:.3f}")

    def trainable(self, ctx):
        from jobcast.storage import partition, read_manifest

        path = partition(ctx.settings.data_dir, "raw", "job_posting_tags", date=ctx.ds)
        if path.is_dir() and read_manifest(path).get("rows") == 0:
            return (f"the board ticks no tags on {ctx.ds} ({ctx.settings.source_schema}.job_posting_tags is missing or "
                    "empty; see docs/source-contract.md)")
        return None

    def labelled(self):
        from pyspark.sql import functions as F

        return F.col(TICKED).isNotNull()

    def window_rows(self, ctx, frame, days, first_holdout_day, labelled=True):
        """Each posting once (its newest snapshot), with the tags its employer ticked, from the logical date's
        snapshot of job_posting_tags (ticks carry no date: the newest state is the label)."""
        from pyspark.sql import functions as F

        from jobcast.storage import partition

        path = partition(ctx.settings.data_dir, "raw", "job_posting_tags", date=ctx.ds)
        if not path.is_dir():
            raise InputDataError(f"{path}: no snapshot of the ticked tags; run `jobcast extract --date {ctx.ds}` first")
        ticked = (ctx.spark().read.parquet(str(path)).where(F.col("tag").isNotNull())
                  .groupBy("job_id").agg(F.sort_array(F.collect_set("tag")).alias(TICKED)))
        rows = super().window_rows(ctx, frame, days, first_holdout_day, labelled=False).join(ticked, "job_id", "left")
        return rows.where(self.labelled()) if labelled else rows

    # ---------------------------------------------------------------------------------------------- model
    def _long(self, dense, scores, k: int):
        """(posting, tag) rows: the posting's features, every tag's text score, the tag, its own text score."""
        import numpy as np

        n = dense.shape[0]
        rep = np.repeat(np.arange(n), k)
        tag = np.tile(np.arange(k, dtype=float), n)
        own = scores[rep, tag.astype(int)]
        return np.column_stack([dense[rep], scores[rep], tag, own])

    def fit(self, df, schema, params):
        import numpy as np
        import pandas as pd

        from jobcast.errors import ModelError
        from jobcast.models import task_models as tm
        from jobcast.models.text_model import fit_out_of_fold

        ticked = df[TICKED].map(lambda v: [] if v is None else list(v))
        counts_by_tag = pd.Series([t for v in ticked for t in v]).value_counts()
        labels = sorted(counts_by_tag.index[:int(params.get("max_tags", 50))].tolist())
        if len(labels) < 1:
            raise ModelError("job_tags: no ticked tags in the training window; expected postings with ticked tags")
        k, index = len(labels), {t: j for j, t in enumerate(labels)}
        Y = np.zeros((len(df), k))
        for i, v in enumerate(ticked):
            for t in v:
                if t in index:
                    Y[i, index[t]] = 1.0
        counts = schema.text_counts(df)
        oof, text = fit_out_of_fold("regressor", counts, Y, strength=params.get("text_alpha", 1.0),
                                    folds=int(params.get("text_folds", 5)), seed=int(params.get("seed", 7)),
                                    jobs=params.get("text_workers"), max_rows=tm.row_bound(params, "text_max_rows"))
        X = self._long(schema.dense(df), oof, k)
        width = len(schema.numeric) + len(schema.categorical)
        categorical = [*schema.categorical_indices, width + k]
        fit_rows, stop_rows = tm.split(df, "posted_at")
        long_rows = (lambda rows: (rows[:, None] * k + np.arange(k)).reshape(-1))
        y = Y.reshape(-1)
        lgb_params = tm.lgb_params(params, objective=self.objective)
        booster = tm.fit_booster(lgb_params, X, categorical, y, None, params, long_rows(fit_rows), long_rows(stop_rows))
        # The PU correction and the threshold, on the tail rows the booster did not fit (their text scores are
        # out of fold too).
        tail = long_rows(stop_rows)
        p_ticked = booster.predict(X[tail], num_iteration=booster.best_iteration or None).reshape(len(stop_rows), k)
        y_tail = Y[stop_rows]
        rate = np.array([p_ticked[y_tail[:, j] == 1, j].mean() if y_tail[:, j].any() else 1.0 for j in range(k)])
        rate = np.clip(rate, 0.05, 1.0)
        threshold = expected_f1_threshold(np.clip(p_ticked / rate, 0, 1))
        booster = tm.refit_booster(lgb_params, X, categorical, y, booster, params)
        return {"model": booster}, {"labels": labels, "text_models": {"text_tags": text}, "tick_rate": rate.round(6).tolist(),
                                    "threshold": threshold, "tail_rows": int(len(stop_rows))}

    def probabilities(self, model, df, num_threads: int = 1, counts=None, X=None):
        """P(tag | posting) for each of the model's labels: (n, tags)."""
        import numpy as np

        k = len(model.labels)
        if X is None:
            counts = model.schema.text_counts(df) if counts is None else counts
            X = self._long(model.schema.dense(df), model.text_models["text_tags"].scores(counts), k)
        p = model.boosters["model"].predict(X, num_threads=num_threads).reshape(len(df), k)
        return np.clip(p / np.asarray(model.info["tick_rate"]), 0.0, 1.0)

    def predict(self, model, df, num_threads):
        import numpy as np
        import pandas as pd

        from jobcast.models.reasons import Column, dense_columns

        k = len(model.labels)
        counts = model.schema.text_counts(df)
        text = model.text_models["text_tags"]
        X = self._long(model.schema.dense(df), text.scores(counts), k)
        p = self.probabilities(model, df, num_threads, X=X)
        reasons = None
        if model.with_reasons:  # for the posting's most likely tag: the booster's logit of its (posting, tag) row
            best = np.argmax(p, axis=1)
            columns = (dense_columns(model.schema) + [Column("text", text=(text, j)) for j in range(k)]
                       + [Column("tag", categorical="_jc_tag"), Column("text", text=(text, best))])
            rows = np.arange(len(df)) * k + best
            named = df.assign(_jc_tag=np.asarray(model.labels, dtype=object)[best])
            reasons = model.explain(X[rows], named, counts, "logit of the most likely tag being ticked",
                                    columns=columns, num_threads=num_threads)[1]
        labels, threshold = model.labels, float(model.info["threshold"])
        order = np.argsort(-p, axis=1, kind="stable")
        tags, probs = [], []
        for row, o in zip(p, order):
            tags.append(json.dumps([{"tag": labels[j], "probability": round(float(row[j]), 6)} for j in o if row[j] >= threshold],
                                   ensure_ascii=False))
            probs.append(json.dumps({labels[j]: round(float(row[j]), 6) for j in range(len(labels))}, ensure_ascii=False))
        return pd.DataFrame({"job_id": df["job_id"].astype("int64").to_numpy(), "tags": tags, "probabilities": probs,
                             "reasons": reasons})

    def metrics(self, holdout, pred):
        """Against the ticked tags of the holdout postings (incomplete: the gate compares models on them; the
        quality bench compares with the true tags)."""
        ticked = [set() if v is None else set(v) for v in holdout[TICKED]]
        predicted = [{e["tag"] for e in json.loads(t)} for t in pred["tags"]]
        return f1_scores(ticked, predicted)

    def baseline(self, train, holdout):
        """Every posting gets the tags that more than half of the training postings ticked."""
        import pandas as pd

        ticked = [[] if v is None else list(v) for v in train[TICKED]]
        rate = pd.Series([t for v in ticked for t in v]).value_counts() / max(len(train), 1)
        common = set(rate[rate > 0.5].index)
        m = f1_scores([set() if v is None else set(v) for v in holdout[TICKED]], [common] * len(holdout))
        return {"baseline_micro_f1": m["micro_f1"]}

    def manifest_extras(self, model):
        return {"labels": model.labels, "threshold": float(model.info["threshold"])}

    def suite_parameters(self, settings, preds, manifest, df):
        labels = manifest.get("labels")
        if not isinstance(labels, list) or not labels:
            raise InputDataError(f"{preds}/_manifest.json: no \"labels\" list; expected the job_tags model's tags "
                                 "(written by `jobcast score --task job_tags`)")
        return add_tag_checks(df, [str(x) for x in labels], float(manifest.get("threshold", 0.0))), {}

    # ---------------------------------------------------------------------------------------------- quality
    def truth_quality(self, bench):
        """Micro- and macro-F1 of the predicted tags against the TRUE tags of every holdout posting (ticked or
        not), next to the Bayes limit (the generator's posterior, thresholded the same way: at the threshold
        that maximises its expected micro-F1) and a keyword baseline (a tag is predicted when its name is in the
        text); and the calibration error of the probabilities against the truth."""
        import numpy as np
        import pyarrow.parquet as pq

        from jobcast.features.text import normalise
        from jobcast.models.task_models import HOLDOUT
        from jobcast.storage import partition

        latest = bench.window(labelled=False)
        h = latest[latest[HOLDOUT].to_numpy()].reset_index(drop=True)
        labels = bench.model.labels
        truth = bench.truth("select job_id, tag, present, posterior from truth.job_tags")
        truth = truth[truth["tag"].isin(labels) & truth["job_id"].isin(h["job_id"])]
        present = truth.pivot(index="job_id", columns="tag", values="present").reindex(index=h["job_id"], columns=labels)
        posterior = truth.pivot(index="job_id", columns="tag", values="posterior").reindex(index=h["job_id"], columns=labels)
        keep = present.notna().all(axis=1).to_numpy()
        h, present, posterior = h[keep], present[keep].to_numpy(bool), posterior[keep].to_numpy(float)
        p = self.probabilities(bench.model, h, num_threads=0)
        threshold = float(bench.model.info["threshold"])
        as_sets = (lambda m: [{labels[j] for j in np.flatnonzero(row)} for row in m])
        true_sets = as_sets(present)
        model = f1_scores(true_sets, as_sets(p >= threshold))
        bayes = f1_scores(true_sets, as_sets(posterior >= expected_f1_threshold(posterior)))
        # Keyword baseline on the postings' own text (the newest raw snapshot that has each holdout posting).
        texts: dict[int, str] = {}
        for d in sorted({str(x)[:10] for x in h["logical_date"]}):
            t = pq.read_table(partition(bench.ctx.settings.data_dir, "raw", "job_postings", date=d),
                              columns=["job_id", "title", "description"]).to_pandas()
            texts.update({j: normalise(f"{a} {b}") for j, a, b in zip(t["job_id"], t["title"], t["description"])})
        words = [normalise(tag) for tag in labels]
        keyword = [{labels[j] for j, w in enumerate(words) if w in texts.get(job, "")} for job in h["job_id"]]
        base = f1_scores(true_sets, keyword)
        bins = np.clip((p.reshape(-1) * 10).astype(int), 0, 9)
        y = present.reshape(-1).astype(float)
        ece = float(sum(abs(p.reshape(-1)[bins == b].mean() - y[bins == b].mean()) * (bins == b).sum()
                        for b in range(10) if (bins == b).any()) / max(len(y), 1))
        n, nan = len(h), float("nan")
        return [bench.row("micro-F1 vs true tags", model["micro_f1"], bayes["micro_f1"], base["micro_f1"],
                          model["micro_f1"] - bayes["micro_f1"], ">= -0.03", n,
                          model["micro_f1"] >= bayes["micro_f1"] - 0.03 and model["micro_f1"] > base["micro_f1"]),
                bench.row("macro-F1 vs true tags", model["macro_f1"], bayes["macro_f1"], base["macro_f1"],
                          model["macro_f1"] - bayes["macro_f1"], "", n, True),
                bench.row("calibration error", ece, nan, nan, nan, "", int(len(y)), True),
                bench.row("mean probability vs true rate", float(p.mean()), float(y.mean()), nan, float(p.mean() - y.mean()),
                          "", int(len(y)), True)]


def expected_f1_threshold(p, grid=None) -> float:
    """The threshold t maximising the expected micro-F1 of predicting the tags with probability >= t, when p
    are the tags' probabilities: E[TP] = sum of p over predicted, E[positives] = sum of p."""
    import numpy as np

    p = np.asarray(p, dtype=float).reshape(-1)
    grid = np.linspace(0.05, 0.95, 91) if grid is None else grid
    total = p.sum()
    best, best_t = -1.0, 0.5
    for t in grid:
        chosen = p >= t
        f1 = 2 * p[chosen].sum() / max(chosen.sum() + total, 1e-12)
        if f1 > best:
            best, best_t = f1, float(t)
    return round(best_t, 4)


def f1_scores(true: list[set], predicted: list[set]) -> dict[str, float]:
    """Micro-F1 over every (posting, tag) decision and macro-F1 over the tags that occur in either."""
    tp = sum(len(t & p) for t, p in zip(true, predicted))
    fp = sum(len(p - t) for t, p in zip(true, predicted))
    fn = sum(len(t - p) for t, p in zip(true, predicted))
    micro = 2 * tp / max(2 * tp + fp + fn, 1)
    tags = sorted(set().union(*true, *predicted)) if true else []
    per = []
    for tag in tags:
        a = sum(tag in t and tag in p for t, p in zip(true, predicted))
        b = sum(tag in p and tag not in t for t, p in zip(true, predicted))
        c = sum(tag in t and tag not in p for t, p in zip(true, predicted))
        per.append(2 * a / max(2 * a + b + c, 1))
    return {"micro_f1": float(micro), "macro_f1": float(sum(per) / len(per)) if per else 0.0,
            "precision": float(tp / max(tp + fp, 1)), "recall": float(tp / max(tp + fn, 1))}


TAG_DERIVED = ("tags_well_formed", "tags_count", "probabilities_well_formed")


def add_tag_checks(df, labels: list[str], threshold: float):
    """GX has no expectation on values inside JSON: derive columns the suite checks. tags_well_formed: a JSON
    list of {tag: one of the model's tags, probability: threshold..1}, no tag twice, most likely first;
    probabilities_well_formed: a JSON object giving every tag of the model a probability in [0, 1]."""
    clash = [c for c in TAG_DERIVED if c in df.columns]
    if clash:
        raise InputDataError(f"job_tags predictions have columns {clash}, which validation derives itself; "
                             "expected only job_id, tags, probabilities")
    known = set(labels)
    ok, count, probs_ok = [], [], []
    for tags, probs in zip(df["tags"], df["probabilities"]):
        try:
            entries, table = json.loads(tags), json.loads(probs)
        except (TypeError, ValueError):
            entries, table = None, None
        good = isinstance(entries, list) and all(
            isinstance(e, dict) and e.get("tag") in known and isinstance(e.get("probability"), (int, float))
            and not isinstance(e.get("probability"), bool) and threshold - 1e-6 <= e["probability"] <= 1 for e in entries)
        if good:
            seq = [e["probability"] for e in entries]
            good = len({e["tag"] for e in entries}) == len(entries) and all(a >= b for a, b in zip(seq, seq[1:]))
        ok.append(bool(good))
        count.append(len(entries) if isinstance(entries, list) else None)
        probs_ok.append(isinstance(table, dict) and set(table) == known and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in table.values()))
    return df.assign(tags_well_formed=ok, tags_count=count, probabilities_well_formed=probs_ok)


TASK = JobTags()
