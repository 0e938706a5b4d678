"""Reasons behind a prediction: its three strongest contributions, with a sign and a human name.

Exact decomposition, at the cost of a plain predict. A booster's raw score is, tree by tree, the root's
expected value plus the change in expected value at each split on the row's path to its leaf; giving each
change to the split's feature (path attribution, "Saabas") decomposes the raw score exactly:
    raw = base + sum over features of contribution.
LightGBM's pred_contrib computes TreeSHAP values instead, which also add up exactly but cost O(depth^2) more per
tree: measured on the 100k bench's salary model, 40-60x a predict, against the 2x budget for scoring with
reasons. Path attribution is the same leaf lookup as a predict (pred_leaf) plus a sparse product, so it is
used here; it is exact, not Shapley-consistent (a feature split near the root can take credit that TreeSHAP
would share).

A stacked text score (a linear model over TF-IDF) is split further into the terms that produced it: the
linear model decomposes exactly (score - intercept = sum of coef x tfidf over the row's terms), and the
booster's contribution through that score is shared among its terms by their share of |coef x tfidf|, so
the shares still add up to it. Term ids map back to the n-grams that hit them through a dictionary built at
training (term_dictionary) and kept with the model (terms.json).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

TOP = 3            # reasons listed per row
TERMS_PER_SCORE = 5  # terms a stacked score is split into per row (the rest stays in "rest")

NUMERIC_NAMES = {
    "title_len": "title length", "desc_len": "description length", "posting_age_days": "days since posted",
    "salary_offered": "salary shown", "views_7d": "views in the last 7 days", "applies_7d": "applications in the last 7 days",
    "views_28d": "views in the last 28 days", "applies_28d": "applications in the last 28 days",
    "job_cvr_28d": "posting's past apply rate", "company_cvr_28d": "company's past apply rate",
    "category_cvr_28d": "category's past apply rate",
}
CATEGORICAL_NAMES = {"prefecture": "prefecture", "employment_type": "employment type", "category_filed": "filed category"}
TERM_KINDS = {"tc": "title", "tw": "title", "dc": "description", "dw": "description", "T=": "title is",
              "F=": "title starts with", "L=": "title ends with", "C=": "company"}


def term_name(token: str | None, term_id: int) -> str:
    """'tcエンジ' -> 'title: エンジ'; an id the dictionary lacks keeps its number."""
    if not token:
        return f"text term #{term_id}"
    kind = TERM_KINDS.get(token[:2])
    return f"{kind}: {token[2:].strip()}" if kind else token


class PathExplainer:
    """Per-row path attributions of a LightGBM booster (see the module docstring)."""

    def __init__(self, booster, num_class: int = 1):
        import scipy.sparse as sp

        dump = booster.dump_model()
        self.num_class, self.num_feature = num_class, booster.num_feature()
        rows, cols, vals, offsets = [], [], [], []
        base = np.zeros(num_class)
        start = 0
        for t, info in enumerate(dump["tree_info"]):
            k = t % num_class
            root = info["tree_structure"]
            offsets.append(start)
            if "split_feature" not in root:  # a one-leaf tree
                base[k] += float(root["leaf_value"])
                start += 1
                continue
            base[k] += float(root["internal_value"])
            stack = [(root, [])]
            while stack:
                node, path = stack.pop()
                for side in ("left_child", "right_child"):
                    child = node[side]
                    leaf = "leaf_index" in child
                    value = float(child["leaf_value"] if leaf else child["internal_value"])
                    step = path + [(int(node["split_feature"]), value - float(node["internal_value"]))]
                    if leaf:
                        for f, delta in step:
                            rows.append(start + int(child["leaf_index"]))
                            cols.append(f)
                            vals.append(delta)
                    else:
                        stack.append((child, step))
            start += int(info["num_leaves"])
        self.matrix = sp.csr_matrix((vals, (rows, cols)), shape=(start, self.num_feature))  # duplicates add up
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.base = base
        self.booster = booster

    def contributions(self, X, klass: np.ndarray | None = None, num_threads: int = 1):
        """(contributions: n x features CSR, base: n) of each row's raw score (of class klass[i] for multiclass)."""
        import scipy.sparse as sp

        leaves = np.asarray(self.booster.predict(X, pred_leaf=True, num_threads=num_threads), dtype=np.int64)
        n, trees = leaves.shape
        hit = leaves + self.offsets[None, :trees]
        if self.num_class > 1:
            klass = np.asarray(klass, dtype=np.int64)
            mine = (np.arange(trees)[None, :] % self.num_class) == klass[:, None]  # the trees of the row's class
            indptr = np.concatenate([[0], np.cumsum(mine.sum(axis=1))])
            one_hot = sp.csr_matrix((np.ones(int(indptr[-1])), hit[mine], indptr), shape=(n, self.matrix.shape[0]))
            return one_hot @ self.matrix, self.base[klass]
        one_hot = sp.csr_matrix((np.ones(n * trees), hit.reshape(-1), np.arange(0, n * trees + 1, trees)),
                                shape=(n, self.matrix.shape[0]))
        return one_hot @ self.matrix, np.full(n, self.base[0])


@dataclass
class Column:
    """How to name a booster input column's contribution: a plain name, a categorical's value, or a stacked
    text score to split into its terms (text model, output index)."""
    name: str
    categorical: str | None = None       # the frame column whose value completes the name
    text: tuple[Any, Any] | None = None  # (TextModel, output: an index, or one per row) whose terms share it


def dense_columns(schema) -> list[Column]:
    return ([Column(NUMERIC_NAMES.get(c, c)) for c in schema.numeric]
            + [Column(CATEGORICAL_NAMES.get(c, c), categorical=c) for c in schema.categorical])


def explain(contrib, base: np.ndarray, raw: np.ndarray, columns: list[Column], df, counts, terms: dict[int, str],
            scale: str) -> list[str]:
    """The reasons JSON of each row: its value on the raw scale, the base, the TOP strongest contributions
    (name, effect) and the rest, so that base + sum(effects) + rest = value. A stacked text score's contribution
    is shared among all the row's terms (by |coef x tfidf|), summed per term over every score of the same text
    model (a category model's per-class scores), and its strongest terms compete with the other features."""
    contrib = contrib.tocsr()
    tfidf: dict[int, Any] = {}
    values = {c.categorical: df[c.categorical].to_numpy() for c in columns if c.categorical}
    out = []
    for i in range(contrib.shape[0]):
        lo, hi = contrib.indptr[i], contrib.indptr[i + 1]
        items: dict[str, float] = {}
        shares: dict[int, tuple[Any, np.ndarray, np.ndarray]] = {}  # text model -> (model, row's term ids, effects)
        for j, c in zip(contrib.indices[lo:hi].tolist(), contrib.data[lo:hi].tolist()):
            if c == 0.0:
                continue
            col = columns[j] if j < len(columns) else Column(f"input {j}")
            if col.text is not None:
                model, o = col.text
                o = o if isinstance(o, int) else int(o[i])  # one output for every row, or the row's own
                x = tfidf.get(id(model))
                if x is None:
                    x = tfidf[id(model)] = model.tfidf.transform(counts).tocsr()
                a, b = x.indptr[i], x.indptr[i + 1]
                lin = np.abs(x.data[a:b] * model.coef[o, x.indices[a:b]])
                total = float(lin.sum())
                if total > 0:
                    if id(model) not in shares:
                        shares[id(model)] = (model, x.indices[a:b], np.zeros(b - a))
                    shares[id(model)][2][:] += c * lin / total
                    continue
                name = col.name
            elif col.categorical is not None:
                v = values[col.categorical][i]
                name = f"{col.name}: {v if v is not None and v == v else '(none)'}"
            else:
                name = col.name
            items[name] = items.get(name, 0.0) + c
        for model, kept, effect in shares.values():
            for t in np.argsort(-np.abs(effect), kind="stable")[:TERMS_PER_SCORE].tolist():
                term = int(model.tfidf.columns[kept[t]])
                name = term_name(terms.get(term), term)
                items[name] = items.get(name, 0.0) + float(effect[t])  # the other terms' share stays in "rest"
        out.append(_reasons_json(items, float(raw[i]), float(base[i]), scale))
    return out


def _reasons_json(items: dict[str, float], value: float, base: float, scale: str) -> str:
    ranked = sorted(items.items(), key=lambda kv: -abs(kv[1]))[:TOP]
    listed = sum(e for _, e in ranked)
    return json.dumps({"scale": scale, "value": round(value, 6), "base": round(base, 6),
                       "top": [{"name": n, "effect": round(e, 6)} for n, e in ranked],
                       "rest": round(value - base - listed, 6)}, ensure_ascii=False)


def linear_reasons(model, o: np.ndarray, counts, terms: dict[int, str], scale: str) -> list[str]:
    """Reasons of a linear text model's own score (output o[i] of row i): its terms' coef x tfidf exactly."""
    x = model.tfidf.transform(counts).tocsr()
    out = []
    for i in range(x.shape[0]):
        a, b = x.indptr[i], x.indptr[i + 1]
        lin = x.data[a:b] * model.coef[o[i], x.indices[a:b]]
        value = float(model.intercept[o[i]] + lin.sum())
        items: dict[str, float] = {}
        for t in np.argsort(-np.abs(lin), kind="stable")[:TERMS_PER_SCORE * 2].tolist():
            term = int(model.tfidf.columns[x.indices[a + t]])
            name = term_name(terms.get(term), term)
            items[name] = items.get(name, 0.0) + float(lin[t])
        out.append(_reasons_json(items, value, float(model.intercept[o[i]]), scale))
    return out


def wanted_terms(text_models: dict, extra=(), per_output: int = 2000) -> list[int]:
    """The term ids worth naming: each text model's strongest per output, and any the booster reads directly."""
    ids: set[int] = {int(t) for t in extra}
    for m in text_models.values():
        if not hasattr(m, "coef"):
            continue
        for row in np.abs(np.asarray(m.coef)):
            top = np.argsort(-row, kind="stable")[:per_output]
            ids.update(int(m.tfidf.columns[t]) for t in top.tolist())
    return sorted(ids)


def term_dictionary(spark, postings_path: str, text_spec, ids: list[int], sample_rows: int = 50_000) -> dict[int, str]:
    """id -> what to call it, for the given ids, from (a sample of) the postings' text, in Spark with the features'
    own tokenizer and hash (jobcast.features.text): the word that most often produced it, with its field prefix
    (a character n-gram 'エン' of 'エンジニア' is named 'エンジニア', so the reasons read as words and a word's
    n-grams add up to one reason); a word n-gram or whole-string token is named by itself."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from jobcast.features.text import TOKENS, add_token_words

    if not ids:
        return {}
    posts = spark.read.parquet(postings_path)
    n = posts.count()
    if n > sample_rows:
        posts = posts.sample(fraction=sample_rows / n, seed=7)
    wanted = spark.createDataFrame([(int(i),) for i in ids], "term int")
    toks = (add_token_words(posts.select("title", "description", "company_id"), text_spec)
            .select(F.explode(TOKENS).alias("x")).select(F.col("x.t").alias("token"), F.col("x.w").alias("word"))
            .withColumn("term", F.expr(f"cast(pmod(hash(token), {text_spec.num_features}) as int)"))
            .join(F.broadcast(wanted), "term", "left_semi")
            # a character n-gram is named by its word, under its field's word prefix (tc -> tw, dc -> dw)
            .withColumn("name", F.when(F.col("token").rlike("^[td]c"),
                                       F.concat(F.substring("token", 1, 1), F.lit("w"), F.col("word")))
                        .otherwise(F.col("token")))
            .groupBy("term", "name").count())
    best = Window.partitionBy("term").orderBy(F.col("count").desc(), F.col("name"))
    rows = toks.withColumn("_rn", F.row_number().over(best)).where("_rn = 1").select("term", "name").collect()
    return {int(r["term"]): r["name"] for r in rows}
