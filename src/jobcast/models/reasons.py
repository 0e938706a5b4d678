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
        self._term_ids: dict[int, tuple[Any, np.ndarray]] = {}

    def id(self, name: str) -> int:
        i = self._ids.get(name)
        if i is None:
            i = self._ids[name] = len(self.json)
            self.json.append(json.dumps(name, ensure_ascii=False))
        return i

    def of_terms(self, model) -> np.ndarray:
        """The name id of each of a text model's columns (its kept term ids): n-grams of one word share it."""
        kept = self._term_ids.get(id(model))
        if kept is None or kept[0] is not model:
            ids = np.fromiter((self.id(term_name(self.terms.get(t), t)) for t in model.tfidf.columns.tolist()),
                              dtype=np.int64, count=len(model.tfidf.columns))
            kept = self._term_ids[id(model)] = (model, ids)
        return kept[1]


def explain(contrib, base: np.ndarray, raw: np.ndarray, columns: list[Column], df, counts, terms: dict[int, str],
            scale: str, names: Names | None = None) -> list[str]:
    """The reasons JSON of each row: its value on the raw scale, the base, the TOP strongest contributions
    (name, effect) and the rest, so that base + sum(effects) + rest = value. Contributions with the same name add
    up. A stacked text score's contribution is shared among the row's terms by |coef x tfidf| and summed per
    name over every score of the same text model (a category model's per-class scores), so a word competes with
    the other features by its whole effect.

    Vectorised over the batch, without a sort of its (row, term) entries: every contribution becomes an entry
    of a sparse rows x inputs matrix, one sparse product with an inputs -> names one-hot sums them per name,
    and the TOP are taken per row by repeated row maxima (see _ranked)."""
    import scipy.sparse as sp

    names = names or Names(terms)
    contrib = contrib.tocsr()
    n = contrib.shape[0]
    r = np.repeat(np.arange(n), np.diff(contrib.indptr))
    j, c = contrib.indices.astype(np.int64), contrib.data
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
    shares, term_names = [], []
    fallback = names.id("text")
    for model, cols in text_cols.values():
        m = np.zeros(len(j), dtype=bool)
        out = np.zeros(len(j), dtype=np.int64)
        for jj, o in cols:
            mj = j == jj
            m |= mj
            out[mj] = o if np.isscalar(o) else np.asarray(o, dtype=np.int64)[r[mj]]
        if not m.any():
            continue
        x = model.tfidf.transform(counts).tocsr()
        ax = abs(x)
        acoef = np.abs(np.asarray(model.coef, dtype=np.float64))
        idx = np.flatnonzero(m)
        total = np.asarray(ax @ acoef.T)[r[idx], out[idx]]  # the sum of |coef x tfidf| behind each contribution
        name[idx[total <= 0]] = fallback                     # a row without terms keeps the score as "text"
        idx, total = idx[total > 0], total[total > 0]
        # row i's terms share sum over outputs o of contribution(i, o) x |coef[o, t]| x |tfidf(i, t)| / total(i, o)
        w = sp.coo_matrix((c[idx] / total, (r[idx], out[idx])), shape=(n, model.outputs)).toarray().astype(np.float32)
        shares.append(sp.csr_matrix((_shares(w, acoef.astype(np.float32), ax), x.indices, x.indptr), shape=x.shape))
        term_names.append(names.of_terms(model))
    keep = name >= 0
    rows_kept = r[keep]
    direct = sp.csr_matrix((c[keep], name[keep], np.concatenate([[0], np.cumsum(np.bincount(rows_kept, minlength=n))])),
                           shape=(n, len(names.json)))
    return _reasons_json(_by_name(direct, shares, term_names, len(names.json)), names,
                         np.asarray(raw, dtype=float), np.asarray(base, dtype=float), scale)


def _shares(w: np.ndarray, acoef: np.ndarray, ax, chunk: int = 1024) -> np.ndarray:
    """At each nonzero (i, t) of ax: ax[i, t] x sum over o of w[i, o] x acoef[o, t] (float32). Outputs times
    entries multiply-adds, done a block of rows at a time so the block's arrays stay in cache (2.5x faster than
    whole-batch passes, measured at 18 outputs)."""
    n = ax.shape[0]
    counts = np.diff(ax.indptr)
    used = np.flatnonzero((w != 0).any(axis=0)).tolist()
    effect = np.zeros(ax.nnz, dtype=np.float32)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        lo, hi = ax.indptr[a], ax.indptr[b]
        terms, per_row, acc, tmp = ax.indices[lo:hi], counts[a:b], effect[lo:hi], np.empty(hi - lo, dtype=np.float32)
        for o in used:
            np.take(acoef[o], terms, out=tmp)
            tmp *= np.repeat(w[a:b, o], per_row)
            acc += tmp
    effect *= ax.data
    return effect


def _by_name(direct, shares: list, term_names: list[np.ndarray], width: int):
    """rows x names: the direct contributions (already by name, a name may repeat in a row) plus each text
    model's per-term shares mapped to their names (a model's n-grams of one word share a name), summed per
    (row, name). Each part is re-indexed by name as it is (duplicates and unsorted rows allowed) and the parts are
    added: scipy's general CSR addition sums the duplicates of a row without sorting it (measured 2.6x faster
    than stacking the parts and one sparse product with a terms -> names one-hot, whose stacking sorted every row)."""
    import scipy.sparse as sp

    n = direct.shape[0]
    out = sp.csr_matrix((direct.data, direct.indices, direct.indptr), shape=(n, width))
    for share, names in zip(shares, term_names):
        out = out + sp.csr_matrix((share.data, names[share.indices], share.indptr), shape=(n, width))
    return out if shares else out + sp.csr_matrix((n, width))  # the addition also sums direct's duplicates


def _ranked(items, k: int = TOP) -> np.ndarray:
    """Positions in items' data of each row's k largest |values| (nonzero), row by row, strongest first, without
    sorting a batch's millions of (row, name) entries. First a bound: split each row's entries into k runs; the
    k run maxima are k distinct entries, so the row's k-th largest is at least their minimum, and only entries
    above it can rank (a few per row). Then k passes of row maxima over those candidates."""
    n = items.shape[0]
    counts = np.diff(items.indptr)
    row = np.repeat(np.arange(n), counts)
    a = np.abs(items.data)
    bound = np.zeros(n)
    long = np.flatnonzero(counts >= k)
    if len(long):
        starts = items.indptr[:-1][counts > 0]
        runs = items.indptr[long][:, None] + (counts[long] // k)[:, None] * np.arange(k)[None, :]
        cuts = np.unique(np.concatenate([starts, runs.ravel()]))
        maxima = np.maximum.reduceat(a, cuts)
        bound[long] = maxima[np.searchsorted(cuts, runs)].min(axis=1)
    cand = np.flatnonzero((a >= bound[row]) & (a > 0))
    a, crow = a[cand], row[cand]
    picked, passes = [], []
    for p in range(k):
        if not len(a):
            break
        best = np.full(n, -1.0)
        np.maximum.at(best, crow, a)
        hit = np.flatnonzero((a == best[crow]) & (a > 0))
        first = hit[np.concatenate([[True], crow[hit][1:] != crow[hit][:-1]])] if len(hit) else hit
        picked.append(first)
        passes.append(np.full(len(first), p))
        a = a.copy()
        a[first] = -1.0
    pos = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
    pos = pos[np.lexsort((np.concatenate(passes) if passes else pos, crow[pos]))]
    return cand[pos]


def _reasons_json(items, names: Names, value: np.ndarray, base: np.ndarray, scale: str) -> list[str]:
    """Each row's TOP items (rows x names, one entry per name) ranked by |effect|; base + listed + rest = value."""
    n = items.shape[0]
    top = _ranked(items)
    row = np.repeat(np.arange(n), np.diff(items.indptr))[top]
    effect = items.data[top]
    rest = value - base - np.bincount(row, weights=effect, minlength=n)
    entries = [f'{{"name": {names.json[i]}, "effect": {e}}}' for i, e in zip(items.indices[top].tolist(), _nums(effect))]
    bounds = np.concatenate([[0], np.cumsum(np.bincount(row, minlength=n))]).tolist()
    head = f'{{"scale": {json.dumps(scale, ensure_ascii=False)}, "value": '
    return [f'{head}{v}, "base": {b}, "top": [{", ".join(entries[bounds[i]:bounds[i + 1]])}], "rest": {x}}}'
            for i, (v, b, x) in enumerate(zip(_nums(value), _nums(base), _nums(rest)))]


def _nums(x: np.ndarray) -> list[str]:
    """Numbers as json.dumps writes them, to 6 decimals (float repr; NaN and Infinity as json writes them)."""
    x = np.round(np.asarray(x, dtype=float), 6)
    return list(map(repr, x.tolist())) if np.isfinite(x).all() else [json.dumps(v) for v in x.tolist()]


def linear_reasons(model, o: np.ndarray, counts, terms: dict[int, str], scale: str, names: Names | None = None) -> list[str]:
    """Reasons of a linear text model's own score (output o[i] of row i): its terms' coef x tfidf exactly."""
    import scipy.sparse as sp

    names = names or Names(terms)
    x = model.tfidf.transform(counts).tocsr()
    n = x.shape[0]
    o = np.asarray(o, dtype=np.int64)
    xrow = np.repeat(np.arange(n), np.diff(x.indptr))
    lin = x.data.astype(np.float64) * model.coef[o[xrow], x.indices]
    intercept = np.asarray(model.intercept, dtype=float)[o]
    value = intercept + np.bincount(xrow, weights=lin, minlength=n)
    term_names = names.of_terms(model)
    empty = sp.csr_matrix((n, len(names.json)))
    items = _by_name(empty, [sp.csr_matrix((lin, x.indices, x.indptr), shape=x.shape)], [term_names], len(names.json))
    return _reasons_json(items, names, value, intercept, scale)


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
