"""The stacked text component: a linear model over TF-IDF of the hashed text terms, fitted out of fold.

Boosted trees are weak on sparse, high-dimensional text; a linear model over a large TF-IDF space is the
standard strong learner there. Each task fits one (LinearSVC one-vs-rest for a label, ridge for a number)
and hands its scores to LightGBM as features. So LightGBM never sees in-sample scores, the training rows'
scores are out of fold: K models, each fitted without one fold, score that fold (rows of one posting stay in
one fold). Scoring uses one more model fitted on every training row.

TF-IDF: sublinear term frequency (1 + log count), smoothed IDF from the training rows (a model parameter,
not a property of a day's features), L2-normalised rows. Only the terms present in training are kept
(`columns`), so a model's size follows its vocabulary, not the 2^hash_bits space.

Exact-match tokens (the whole title, the company; see jobcast.features.text) get one weight each, shrunk by
the model's regularisation: with out-of-fold fitting that is a smoothed target encoding of the title and of
the company that cannot leak a row's own label.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jobcast.errors import ModelError


def terms_matrix(lists, num_features: int):
    """CSR of term counts from a sequence of id arrays (an id repeated k times counts k)."""
    import scipy.sparse as sp

    n = len(lists)
    lengths = np.fromiter((0 if v is None else len(v) for v in lists), dtype=np.int64, count=n)
    parts = [np.asarray(v, dtype=np.int32) for v in lists if v is not None and len(v)]
    indices = np.concatenate(parts) if parts else np.empty(0, np.int32)
    if len(indices) and (indices.min() < 0 or indices.max() >= num_features):
        raise ModelError(f"text term ids outside [0, {num_features}): the features were hashed into another space")
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    m = sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(n, num_features))
    m.sum_duplicates()
    return m


@dataclass
class Tfidf:
    columns: np.ndarray  # term ids kept (seen in training)
    idf: np.ndarray      # per kept column

    @classmethod
    def fit(cls, counts) -> "Tfidf":
        df = np.bincount(counts.indices, minlength=counts.shape[1])
        columns = np.flatnonzero(df).astype(np.int32)
        n = counts.shape[0]
        return cls(columns, (np.log((1.0 + n) / (1.0 + df[columns])) + 1.0).astype(np.float32))

    # A loaded model (Predictor.load) remembers its last transform: scoring a batch with reasons reads the same
    # TF-IDF rows for the booster's input and to share the text score among the terms. Off in training, where
    # it would keep the whole training matrix alive.
    memo: bool = field(default=False, repr=False, compare=False)
    _last: tuple | None = field(default=None, repr=False, compare=False)

    def transform(self, counts):
        from sklearn.preprocessing import normalize

        if self._last is not None and self._last[0] is counts:
            return self._last[1]
        x = counts[:, self.columns].astype(np.float32)
        x.data = (1.0 + np.log(x.data)) * self.idf[x.indices]
        x = normalize(x, norm="l2", copy=False)
        if self.memo:
            self._last = (counts, x)
        return x


@dataclass
class TextModel:
    """Scores from text: (n, classes) decision values for a classifier, (n, targets) predictions for a regressor
    (one column per target: y of shape (n,) or (n, targets))."""

    kind: str                       # "classifier" or "regressor"
    tfidf: Tfidf
    coef: np.ndarray                # (outputs, kept columns), float32
    intercept: np.ndarray           # (outputs,)
    labels: list[str] = field(default_factory=list)
    temperature: float = 1.0        # softmax(temperature * scores) ~ class probabilities (fitted out of fold)
    strength: float | None = None   # the C or alpha it was fitted with

    @property
    def outputs(self) -> int:
        return int(self.coef.shape[0])

    def scores(self, counts) -> np.ndarray:
        x = self.tfidf.transform(counts)
        return np.asarray(x @ self.coef.T, dtype=np.float64) + self.intercept

    def probabilities(self, counts) -> np.ndarray:
        return softmax(self.temperature * self.scores(counts))

    def save(self, path: Path) -> None:
        np.savez_compressed(path, kind=np.array(self.kind), columns=self.tfidf.columns, idf=self.tfidf.idf, coef=self.coef,
                            intercept=self.intercept, labels=np.array(self.labels, dtype=str),
                            temperature=np.array(self.temperature))

    @classmethod
    def load(cls, path: Path) -> "TextModel":
        z = np.load(path, allow_pickle=False)
        return cls(str(z["kind"]), Tfidf(z["columns"], z["idf"]), z["coef"], z["intercept"],
                   [str(x) for x in z["labels"]], float(z["temperature"]))


def softmax(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _fit_one(kind: str, counts, y: np.ndarray, weight: np.ndarray | None, labels: list[str], strength: float) -> TextModel:
    tfidf = Tfidf.fit(counts)
    x = tfidf.transform(counts)
    if kind == "classifier":
        from sklearn.svm import LinearSVC

        present = np.unique(y)
        clf = LinearSVC(C=strength, dual=True, max_iter=2000, random_state=0).fit(x, y, sample_weight=weight)
        coef = np.zeros((len(labels), x.shape[1]), dtype=np.float32)
        intercept = np.full(len(labels), -1e3)  # a class absent from this fold is never the argmax
        if len(present) == 2:  # binary LinearSVC: one hyperplane, positive = the second class
            coef[present[1]], intercept[present[1]] = clf.coef_[0], clf.intercept_[0]
            coef[present[0]], intercept[present[0]] = -clf.coef_[0], -clf.intercept_[0]
        else:
            coef[present], intercept[present] = clf.coef_, clf.intercept_
        return TextModel(kind, tfidf, coef, intercept, labels)
    from sklearn.linear_model import Ridge

    y2 = np.asarray(y, dtype=float).reshape(len(y), -1)  # one column per target
    mean = np.average(y2, axis=0, weights=weight)
    # Weights scaled to mean 1, so alpha means the same with or without them (cvr's are views: unscaled, they
    # shrank alpha ~20x, overfitted and took CG minutes to converge). LSQR: 2-5x fewer products than CG here.
    w = None if weight is None else np.asarray(weight, dtype=float) / max(float(np.mean(weight)), 1e-12)
    reg = Ridge(alpha=strength, fit_intercept=False, solver="lsqr", tol=1e-4).fit(x, y2 - mean, sample_weight=w)
    return TextModel(kind, tfidf, reg.coef_.reshape(y2.shape[1], -1).astype(np.float32), np.asarray(mean, dtype=float))


def fit_out_of_fold(kind: str, counts, y: np.ndarray, *, strength: float | list[float], folds: int = 5, seed: int = 7,
                    groups: np.ndarray | None = None, weight: np.ndarray | None = None,
                    labels: list[str] | None = None, jobs: int | None = None) -> tuple[np.ndarray, TextModel]:
    """Out-of-fold scores of every row and the model fitted on all rows.

    kind "classifier": y holds class codes into `labels`; "regressor": y is the target. `groups` keeps the rows
    of one group (a posting) in one fold. `strength` is LinearSVC's C or ridge's alpha; given a list, the value
    with the best out-of-fold score wins (accuracy, or weighted squared error): boards differ in how much
    text they have and how noisy their labels are, so the regularisation is chosen on the board's own data."""
    grid = [float(x) for x in strength] if isinstance(strength, (list, tuple)) else [float(strength)]
    if len(grid) > 1:
        best = None
        for c in grid:
            oof, model = fit_out_of_fold(kind, counts, y, strength=c, folds=folds, seed=seed, groups=groups,
                                         weight=weight, labels=labels, jobs=jobs)
            w = np.ones(len(y)) if weight is None else weight
            score = (float(np.average(np.argmax(oof, axis=1) == y, weights=w)) if kind == "classifier"
                     else -float(np.average(((oof - np.asarray(y, dtype=float).reshape(len(y), -1)) ** 2).sum(axis=1), weights=w)))
            if best is None or score > best[0]:
                best = (score, oof, model, c)
        best[2].strength = best[3]
        return best[1], best[2]
    strength = grid[0]
    if kind not in ("classifier", "regressor"):
        raise ModelError(f"text model kind {kind!r}: expected classifier or regressor")
    labels = list(labels or [])
    jobs = jobs or os.cpu_count() or 1
    n = counts.shape[0]
    g = np.arange(n) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
    fold_of_group = np.random.default_rng(seed).permutation(g.max() + 1) % folds
    fold = fold_of_group[g]
    width = len(labels) if kind == "classifier" else int(np.asarray(y).reshape(len(y), -1).shape[1])
    oof = np.zeros((n, width))
    for k in range(folds):
        if kind == "classifier" and len(np.unique(y[fold != k])) < 2:
            raise ModelError(f"text model: fold {k} has fewer than 2 classes to learn from; expected more labelled rows")

    def one(k: int) -> TextModel | None:  # k == folds: the model of every row
        rows = np.arange(n) if k == folds else np.flatnonzero(fold != k)
        if k < folds and not np.any(fold == k):
            return None
        return _fit_one(kind, counts[rows], y[rows], None if weight is None else weight[rows], labels, strength)

    # liblinear and scipy's sparse products release the GIL: the folds fit side by side on threads.
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, folds + 1))) as pool:
        fitted = list(pool.map(one, range(folds + 1)))
    for k, m in enumerate(fitted[:folds]):
        if m is not None:
            out_rows = np.flatnonzero(fold == k)
            oof[out_rows] = m.scores(counts[out_rows])
    model = fitted[folds]
    model.strength = strength
    if kind == "classifier":
        model.temperature = fit_temperature(oof, y.astype(int))
    return oof, model


def fit_temperature(scores: np.ndarray, y: np.ndarray) -> float:
    """The softmax scale that minimises the out-of-fold log-loss (one parameter: it calibrates, never reorders)."""
    best, best_t = np.inf, 1.0
    rows = np.arange(len(y))
    for t in np.geomspace(0.1, 100, 61):
        p = softmax(t * scores)[rows, y]
        loss = -float(np.mean(np.log(np.clip(p, 1e-12, 1))))
        if loss < best:
            best, best_t = loss, float(t)
    return best_t


def describe(model: TextModel) -> dict[str, Any]:
    return {"kind": model.kind, "outputs": model.outputs, "terms": int(len(model.tfidf.columns)),
            "temperature": round(model.temperature, 4), "strength": model.strength}
