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
import pandas as pd

TOP = 3  # reasons listed per row

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
        rows, cols, vals, offsets, leaf_values = [], [], [], [], []
        base = np.zeros(num_class)
        start = 0
        for t, info in enumerate(dump["tree_info"]):
            k = t % num_class
            root = info["tree_structure"]
            offsets.append(start)
            if "split_feature" not in root:  # a one-leaf tree
                base[k] += float(root["leaf_value"])
                leaf_values.append([float(root["leaf_value"])])
                start += 1
                continue
            base[k] += float(root["internal_value"])
            values = np.zeros(int(info["num_leaves"]))
            stack = [(root, [])]
            while stack:
                node, path = stack.pop()
                for side in ("left_child", "right_child"):
                    child = node[side]
                    leaf = "leaf_index" in child
                    value = float(child["leaf_value"] if leaf else child["internal_value"])
                    step = path + [(int(node["split_feature"]), value - float(node["internal_value"]))]
                    if leaf:
                        values[int(child["leaf_index"])] = value
                        for f, delta in step:
                            rows.append(start + int(child["leaf_index"]))
                            cols.append(f)
                            vals.append(delta)
                    else:
                        stack.append((child, step))
            leaf_values.append(values)
            start += int(info["num_leaves"])
        self.matrix = sp.csr_matrix((vals, (rows, cols)), shape=(start, self.num_feature))  # duplicates add up
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.leaf_values = np.concatenate(leaf_values) if leaf_values else np.zeros(0)
        self.base = base
        self.booster = booster

    def leaves(self, X, num_threads: int = 1) -> np.ndarray:
        """Each row's leaf in each tree, as an index into the attribution matrix (n x trees): one pass of
        LightGBM, the cost of a predict, from which both the raw scores and the attributions follow."""
        leaves = np.asarray(self.booster.predict(X, pred_leaf=True, num_threads=num_threads), dtype=np.int64)
        return leaves.reshape(len(leaves), -1) + self.offsets[None, :leaves.shape[-1]]

    def raw(self, hit: np.ndarray) -> np.ndarray:
        """Raw scores from the leaves (n x classes): the same sums LightGBM's raw predict makes."""
        values = self.leaf_values[hit]
        n, trees = values.shape
        return values.reshape(n, trees // self.num_class, self.num_class).sum(axis=1)

    def attributions(self, hit: np.ndarray, klass: np.ndarray | None = None):
        """(contributions: n x features CSR, base: n) of each row's raw score (of class klass[i] for multiclass)."""
        import scipy.sparse as sp

        n, trees = hit.shape
        if self.num_class > 1:
            klass = np.asarray(klass, dtype=np.int64)
            # the trees of the row's class: every num_class-th tree from the class's first one
            per = trees // self.num_class
            mine = hit[np.arange(n)[:, None], klass[:, None] + self.num_class * np.arange(per)[None, :]]
            one_hot = sp.csr_matrix((np.ones(n * per), mine.reshape(-1), np.arange(0, n * per + 1, per)),
                                    shape=(n, self.matrix.shape[0]))
            return one_hot @ self.matrix, self.base[klass]
        one_hot = sp.csr_matrix((np.ones(n * trees), hit.reshape(-1), np.arange(0, n * trees + 1, trees)),
                                shape=(n, self.matrix.shape[0]))
        return one_hot @ self.matrix, np.full(n, self.base[0])

    def contributions(self, X, klass: np.ndarray | None = None, num_threads: int = 1):
        """attributions() of X's rows."""
        return self.attributions(self.leaves(X, num_threads), klass)


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


class Names:
    """The names reasons use, as integer ids (so a batch's reasons are ranked with array operations, not a
    Python loop per row), each with its JSON text; a text model's terms are named once per loaded model."""

    def __init__(self, terms: dict[int, str] | None = None):
        self.terms = terms or {}
        self._ids: dict[str, int] = {}
        self.json: list[str] = []
        self._term_ids: dict[int, tuple[Any, np.ndarray, np.ndarray]] = {}

    def id(self, name: str) -> int:
        i = self._ids.get(name)
        if i is None:
            i = self._ids[name] = len(self.json)
            self.json.append(json.dumps(name, ensure_ascii=False))
        return i

    def of_terms(self, model) -> tuple[np.ndarray, np.ndarray]:
        """(the name id of each of a text model's columns (its kept term ids): n-grams of one word share it, and
        |coef| transposed (columns x outputs, float32: a term's outputs in one cache line or two)), made once per
        loaded model."""
        kept = self._term_ids.get(id(model))
        if kept is None or kept[0] is not model:
            ids = np.fromiter((self.id(term_name(self.terms.get(t), t)) for t in model.tfidf.columns.tolist()),
                              dtype=np.int64, count=len(model.tfidf.columns))
            acoef = np.ascontiguousarray(np.abs(np.asarray(model.coef, dtype=np.float32)).reshape(-1, len(ids)).T)
            kept = self._term_ids[id(model)] = (model, ids, acoef)
        return kept[1], kept[2]


def explain(contrib, base: np.ndarray, raw: np.ndarray, columns: list[Column], df, counts, terms: dict[int, str],
            scale: str, names: Names | None = None) -> list[str]:
    """The reasons JSON of each row: its value on the raw scale, the base, the TOP strongest contributions
    (name, effect) and the rest, so that base + sum(effects) + rest = value. Contributions with the same name add
    up. A stacked text score's contribution is shared among the row's terms by |coef x tfidf| and summed per
    name over every score of the same text model (a category model's per-class scores), so a word competes with
    the other features by its whole effect.

    Vectorised over the batch: every contribution gets a name id with array operations, the text scores' are
    shared among their terms by one compiled pass over the row's terms (term_effects), and one more sums each
    row's entries per name and keeps the TOP (top_by_name; both in _compile). No Python loop per row, no sort of
    the batch's (row, term) entries."""
    names = names or Names(terms)
    contrib = contrib.tocsr()
    n = contrib.shape[0]
    r = np.repeat(np.arange(n), np.diff(contrib.indptr))
    j, c = contrib.indices.astype(np.int64), contrib.data.astype(np.float64)
    # each contribution's name id (-1: a stacked text score's, shared among its terms below)
    width = max(len(columns), int(j.max(initial=-1)) + 1)
    plain = np.array([names.id(col.name) if col.text is None and col.categorical is None else -1 for col in columns]
                     + [names.id(f"input {jj}") for jj in range(len(columns), width)], dtype=np.int64)
    name = plain[j] if len(j) else np.zeros(0, dtype=np.int64)
    text_cols: dict[int, list] = {}  # id(model) -> [model, [(column, output: int or one per row)]]
    for jj, col in enumerate(columns):
        if col.text is not None:
            text_cols.setdefault(id(col.text[0]), [col.text[0], []])[1].append((jj, col.text[1]))
        elif col.categorical is not None:
            m = j == jj
            if m.any():
                codes, uniques = pd.factorize(df[col.categorical].to_numpy()[r[m]], use_na_sentinel=True)
                ids = [names.id(f"{col.name}: {v}") for v in uniques] + [names.id(f"{col.name}: (none)")]
                name[m] = np.asarray(ids, dtype=np.int64)[codes]
    parts = []  # (indptr, name ids, effects) per source of named entries, each row's entries contiguous
    text_rest = np.zeros(n)
    for model, cols in text_cols.values():
        per_output = np.zeros((n, model.outputs))  # the booster's contribution through each of the model's scores
        for jj, o in cols:
            mj = j == jj
            out = np.full(int(mj.sum()), o, dtype=np.int64) if np.isscalar(o) else np.asarray(o, dtype=np.int64)[r[mj]]
            np.add.at(per_output, (r[mj], out), c[mj])
        if not per_output.any():
            continue
        x = model.tfidf.transform(counts).tocsr()
        term_names, acoef = names.of_terms(model)
        effects, no_terms = _kernels().term_effects(x.indptr, x.indices, x.data, per_output, acoef)
        text_rest += no_terms  # a row without the model's terms keeps the score as "text"
        parts.append((x.indptr, term_names[x.indices], effects))
    if text_cols:
        fallback = names.id("text")
        has = text_rest != 0
        parts.append((np.concatenate([[0], np.cumsum(has)]), np.full(int(has.sum()), fallback), text_rest[has]))
    keep = name >= 0
    parts.append((np.concatenate([[0], np.cumsum(np.bincount(r[keep], minlength=n))]), name[keep], c[keep]))
    return _reasons_json(_top(parts, len(names.json)), names, np.asarray(raw, dtype=float),
                         np.asarray(base, dtype=float), scale)


_KERNELS = None


def _kernels():
    """The two compiled passes over a batch (numba, compiled once and cached on disk; see _compile)."""
    global _KERNELS
    if _KERNELS is None:
        _KERNELS = _compile()
    return _KERNELS


def _compile():
    """Reasons cost a pass over every (row, term) entry per text score (category: 18 class scores, about 500
    terms a row) and a per-row sum by name with its top 3. In numpy that took an array pass per score, a sparse
    addition and repeated row maxima: 1.3 s of category's 4.2 s for 25k rows in one process. Compiled with numba,
    each is one pass over a row's entries while they are in cache: 0.37 s (term_effects 0.22 s, top_by_name
    0.15 s), and scoring with reasons went from 2.2x to 1.6x the time without (same process, same rows)."""
    from types import SimpleNamespace

    import numba

    @numba.njit(cache=True, nogil=True, fastmath=True)
    def term_effects(indptr, indices, data, per_output, acoef_t):
        """Row i's term t gets sum over outputs o of per_output[i, o] x |coef[o, t] x tfidf(i, t)| / total(i, o),
        total(i, o) being that sum over the row's terms; an output whose row has no terms (total 0) goes to
        no_terms[i]. acoef_t is |coef| transposed (terms x outputs), so an entry reads one term's outputs together
        and the loops over outputs are contiguous (SIMD; fastmath lets the sums be reordered)."""
        n, outputs = per_output.shape
        effects = np.zeros(len(data))
        no_terms = np.zeros(n)
        total = np.zeros(outputs, dtype=np.float32)
        scale = np.zeros(outputs, dtype=np.float32)
        for i in range(n):
            lo, hi = indptr[i], indptr[i + 1]
            total[:] = 0.0
            for e in range(lo, hi):
                d = abs(data[e])
                row = acoef_t[indices[e]]
                for o in range(outputs):
                    total[o] += d * row[o]
            any_share = False
            for o in range(outputs):
                share = per_output[i, o]
                scale[o] = 0.0
                if share == 0.0:
                    continue
                if total[o] <= 0.0:
                    no_terms[i] += share
                else:
                    scale[o] = share / total[o]  # the share per unit of |coef x tfidf|
                    any_share = True
            if not any_share:
                continue
            for e in range(lo, hi):
                row = acoef_t[indices[e]]
                s = np.float32(0.0)
                for o in range(outputs):
                    s += scale[o] * row[o]
                effects[e] = s * abs(data[e])
        return effects, no_terms

    @numba.njit(cache=True, nogil=True)
    def top_by_name(indptr, names, values, width, k):
        """Row by row: the entries of every part (indptr[p] delimits part p's rows) summed per name, and the k
        with the largest |sum| (nonzero), strongest first; equal ones in order of first appearance."""
        parts, n = indptr.shape[0], indptr.shape[1] - 1
        acc = np.zeros(width)
        seen = np.zeros(width, dtype=np.bool_)
        touched = np.empty(width, dtype=np.int64)
        top_names = np.full((n, k), -1, dtype=np.int64)
        top_values = np.zeros((n, k))
        for i in range(n):
            m = 0
            for p in range(parts):
                for e in range(indptr[p, i], indptr[p, i + 1]):
                    name = names[e]
                    if not seen[name]:
                        seen[name] = True
                        touched[m] = name
                        m += 1
                    acc[name] += values[e]
            for q in range(m):
                name = touched[q]
                v = acc[name]
                acc[name] = 0.0
                seen[name] = False
                a = abs(v)
                if a == 0.0:
                    continue
                pos = k
                while pos > 0 and (top_names[i, pos - 1] < 0 or abs(top_values[i, pos - 1]) < a):
                    pos -= 1
                if pos == k:
                    continue
                for s in range(k - 1, pos, -1):
                    top_names[i, s] = top_names[i, s - 1]
                    top_values[i, s] = top_values[i, s - 1]
                top_names[i, pos] = name
                top_values[i, pos] = v
        return top_names, top_values

    return SimpleNamespace(term_effects=term_effects, top_by_name=top_by_name)


def _top(parts: list, width: int, k: int = TOP) -> tuple[np.ndarray, np.ndarray]:
    """(name ids, effects), n x k each (-1: no entry), of each row's k strongest names over the parts
    [(indptr, name ids, values)] (at least one; all of the same n rows), laid end to end for one compiled pass."""
    offsets = np.cumsum([0] + [len(p[1]) for p in parts])
    indptr = np.stack([np.asarray(p[0], dtype=np.int64) + off for p, off in zip(parts, offsets)])
    names = np.concatenate([np.asarray(p[1], dtype=np.int64) for p in parts])
    values = np.concatenate([np.asarray(p[2], dtype=np.float64) for p in parts])
    return _kernels().top_by_name(indptr, names, values, width, k)


def _reasons_json(top: tuple[np.ndarray, np.ndarray], names: Names, value: np.ndarray, base: np.ndarray, scale: str) -> list[str]:
    """Each row's TOP (name, effect) entries, strongest first; base + listed + rest = value."""
    top_names, top_values = top
    listed = top_names >= 0
    rest = value - base - np.where(listed, top_values, 0.0).sum(axis=1)
    entries = [f'{{"name": {names.json[i]}, "effect": {e}}}' for i, e in zip(top_names[listed].tolist(), _nums(top_values[listed]))]
    bounds = np.concatenate([[0], np.cumsum(listed.sum(axis=1))]).tolist()
    head = f'{{"scale": {json.dumps(scale, ensure_ascii=False)}, "value": '
    return [f'{head}{v}, "base": {b}, "top": [{", ".join(entries[bounds[i]:bounds[i + 1]])}], "rest": {x}}}'
            for i, (v, b, x) in enumerate(zip(_nums(value), _nums(base), _nums(rest)))]


def _nums(x: np.ndarray) -> list[str]:
    """Numbers as json.dumps writes them, to 6 decimals (float repr; NaN and Infinity as json writes them)."""
    x = np.round(np.asarray(x, dtype=float), 6)
    return list(map(repr, x.tolist())) if np.isfinite(x).all() else [json.dumps(v) for v in x.tolist()]


def linear_reasons(model, o: np.ndarray, counts, terms: dict[int, str], scale: str, names: Names | None = None) -> list[str]:
    """Reasons of a linear text model's own score (output o[i] of row i): its terms' coef x tfidf exactly."""
    names = names or Names(terms)
    x = model.tfidf.transform(counts).tocsr()
    n = x.shape[0]
    o = np.asarray(o, dtype=np.int64)
    xrow = np.repeat(np.arange(n), np.diff(x.indptr))
    lin = x.data.astype(np.float64) * model.coef[o[xrow], x.indices]
    intercept = np.asarray(model.intercept, dtype=float)[o]
    value = intercept + np.bincount(xrow, weights=lin, minlength=n)
    term_names, _ = names.of_terms(model)
    return _reasons_json(_top([(x.indptr, term_names[x.indices], lin)], len(names.json)), names, value, intercept, scale)


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
    n-grams add up to one reason; a word cluster is named by the title word that most often produced it); a word
    n-gram or whole-string token is named by itself."""
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
                        .when(F.col("token").startswith("g"), F.concat(F.lit("tw"), F.col("word")))  # a title word's cluster
                        .otherwise(F.col("token")))
            .groupBy("term", "name").count())
    best = Window.partitionBy("term").orderBy(F.col("count").desc(), F.col("name"))
    rows = toks.withColumn("_rn", F.row_number().over(best)).where("_rn = 1").select("term", "name").collect()
    return {int(r["term"]): r["name"] for r in rows}
