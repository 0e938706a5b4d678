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

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jobcast.errors import ModelError

log = logging.getLogger(__name__)


def terms_matrix(lists, num_features: int):
    """CSR of term counts from a sequence of TERMS values (an id repeated k times counts k)."""
    import scipy.sparse as sp

    from jobcast.features.text import term_ids

    n = len(lists)
    indices, lengths = term_ids(lists)
    if len(indices) and (indices.min() < 0 or indices.max() >= num_features):
        raise ModelError(f"text term ids outside [0, {num_features}): the features were hashed into another space")
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    m = sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(n, num_features))
    m.sum_duplicates()
    return m


CHUNK = 1 << 22  # stored terms per slice of an elementwise pass over a matrix (16-32 MB of temporaries)


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

    def transform(self, counts, dtype=np.float32):
        """TF-IDF of counts' rows over the kept columns, L2-normalised.

        Built from the counts' arrays in the dtype the solver uses (LinearSVC: float64), so the result (12 bytes a
        stored term in float64) is the one full copy: scipy's column indexing, a cast and the solver's own float64
        conversion made three, and two fold fits side by side held them all (9.3 GB on 155k postings)."""
        import scipy.sparse as sp
        from sklearn.preprocessing import normalize

        if self._last is not None and self._last[0] is counts:
            return self._last[1]
        indptr = counts.indptr
        remap = np.full(counts.shape[1], -1, dtype=np.int32)
        remap[self.columns] = np.arange(len(self.columns), dtype=np.int32)
        columns = remap[counts.indices]
        kept = columns >= 0
        if kept.all():  # every term seen in training
            values = np.log(counts.data, dtype=dtype)
        else:  # terms unseen in training are dropped
            indptr = np.concatenate([[0], np.cumsum(kept)])[indptr]
            columns, values = columns[kept], np.log(counts.data[kept], dtype=dtype)
        del kept
        values += 1.0
        idf = self.idf.astype(dtype, copy=False)
        for start in range(0, len(values), CHUNK):  # idf gathered a slice at a time: no second array of values' size
            values[start:start + CHUNK] *= idf[columns[start:start + CHUNK]]
        x = sp.csr_matrix((values, columns, indptr), shape=(len(indptr) - 1, len(self.columns)))
        if x.shape[0]:  # sklearn refuses an empty matrix
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


def _fit_one(kind: str, counts, rows: np.ndarray | None, y: np.ndarray, weight: np.ndarray | None, labels: list[str],
             strength: float) -> TextModel:
    """The model of counts' `rows` (None: all of them)."""
    if kind == "regressor":
        return _ridge_solve(_ridge_design(counts, rows, y, weight), strength)
    if rows is not None:
        counts, y, weight = counts[rows], y[rows], None if weight is None else weight[rows]
    tfidf = Tfidf.fit(counts)
    if kind == "classifier":
        from sklearn.svm import LinearSVC

        x = tfidf.transform(counts, dtype=np.float64)  # liblinear's input type: no conversion copy
        del counts  # the rows' copy goes before liblinear allocates its own
        present = np.unique(y)
        clf = LinearSVC(C=strength, dual=True, max_iter=2000, random_state=0).fit(x, y, sample_weight=weight)
        del x
        coef = np.zeros((len(labels), len(tfidf.columns)), dtype=np.float32)
        intercept = np.full(len(labels), -1e3)  # a class absent from this fold is never the argmax
        if len(present) == 2:  # binary LinearSVC: one hyperplane, positive = the second class
            coef[present[1]], intercept[present[1]] = clf.coef_[0], clf.intercept_[0]
            coef[present[0]], intercept[present[0]] = -clf.coef_[0], -clf.intercept_[0]
        else:
            coef[present], intercept[present] = clf.coef_, clf.intercept_
        return TextModel(kind, tfidf, coef, intercept, labels)
    raise ModelError(f"text model kind {kind!r}: expected classifier or regressor")


def _ridge_design(counts, rows: np.ndarray | None, y: np.ndarray, weight: np.ndarray | None) -> tuple:
    """What a ridge fit of counts' `rows` solves, for any strength: the TF-IDF, its matrix (scaled by sqrt(weight)),
    the centred target and its mean. The fits of a strength grid share one."""
    if rows is not None:
        counts, y, weight = counts[rows], y[rows], None if weight is None else weight[rows]
    tfidf = Tfidf.fit(counts)
    # float64 when weighted: the rows are scaled by sqrt(weight) in place, in the precision Ridge's own rescaling
    # (a float64 copy of the whole matrix) used.
    x = tfidf.transform(counts, dtype=np.float32 if weight is None else np.float64)
    del counts
    y2 = np.asarray(y, dtype=float).reshape(len(y), -1)  # one column per target
    mean = np.average(y2, axis=0, weights=weight)
    target = y2 - mean
    if weight is not None:
        # Weights scaled to mean 1, so alpha means the same with or without them (cvr's are views: unscaled, they
        # shrank alpha ~20x, overfitted and took CG minutes to converge). Weighted least squares is least squares
        # of sqrt(w) x and sqrt(w) y.
        root = np.sqrt(np.asarray(weight, dtype=float) / max(float(np.mean(weight)), 1e-12))
        _scale_rows(x, root)
        target = target * root[:, None]
    return tfidf, x, target, mean


def _ridge_solve(design: tuple, strength: float) -> TextModel:
    """The ridge model of a design at one strength. LSQR only reads the matrix, so fits may share it."""
    from sklearn.linear_model import Ridge

    tfidf, x, target, mean = design
    # LSQR: 2-5x fewer products than CG here. copy_X=False: the matrix is the design's own (a copy was 8-12 bytes a term).
    reg = Ridge(alpha=strength, fit_intercept=False, solver="lsqr", tol=1e-4, copy_X=False).fit(x, target)
    return TextModel("regressor", tfidf, reg.coef_.reshape(target.shape[1], -1).astype(np.float32),
                     np.asarray(mean, dtype=float))


def _scale_rows(x, factor: np.ndarray, rows: int = 8192) -> None:
    """x's row i times factor[i], in place, a block of rows at a time (np.repeat over every stored term made a
    second array of the matrix's values)."""
    for r0 in range(0, x.shape[0], rows):
        r1 = min(r0 + rows, x.shape[0])
        x.data[x.indptr[r0]:x.indptr[r1]] *= np.repeat(factor[r0:r1], np.diff(x.indptr[r0:r1 + 1]))


def _fit_score(kind: str, scores: np.ndarray, y: np.ndarray, weight: np.ndarray | None) -> float:
    """Higher is better: weighted accuracy (classifier) or minus the weighted squared error (regressor)."""
    w = np.ones(len(y)) if weight is None else weight
    if kind == "classifier":
        return float(np.average(np.argmax(scores, axis=1) == y, weights=w))
    return -float(np.average(((scores - np.asarray(y, dtype=float).reshape(len(y), -1)) ** 2).sum(axis=1), weights=w))


# Below this many stored terms a classifier's fits run one after another in this process (the demo's are ~20M).
PROCESS_MIN_TERMS = 1_000_000
_WORKER: dict[str, Any] = {}  # a fit worker's counts (memory-mapped) and labels, set by _worker_init


def _worker_init(directory: str, shape: tuple[int, int], kind: str, y: np.ndarray, weight: np.ndarray | None,
                 labels: list[str]) -> None:
    import scipy.sparse as sp

    arrays = [np.load(os.path.join(directory, f"{a}.npy"), mmap_mode="r") for a in ("data", "indices", "indptr")]
    _WORKER.update(counts=sp.csr_matrix(tuple(arrays), shape=shape, copy=False), kind=kind, y=y, weight=weight,
                   labels=labels)


def _worker_fit(rows: np.ndarray | None, strength: float) -> TextModel:
    w = _WORKER
    return _fit_one(w["kind"], w["counts"], rows, w["y"], w["weight"], w["labels"], strength)


class _Fits:
    """Runs _fit_one for (rows, strength) pairs, `jobs` at a time, reproducibly.

    liblinear (LinearSVC) draws from one random generator per process (sklearn's newrand), so classifier fits on
    threads race for it and the same data gave different models from run to run. A classifier's fits run in
    worker processes that map the counts from files (each builds only its own TF-IDF rows), or, when small or
    with one job, one after another here. Ridge draws nothing: its fits run on threads (scipy's products
    release the GIL). As with any multiprocessing, a worker imports the script that started the process: a
    script that trains must guard its entry point (`if __name__ == "__main__":`); when workers fail, the fits
    run here, one after another."""

    def __init__(self, kind: str, counts, y: np.ndarray, weight: np.ndarray | None, labels: list[str], jobs: int):
        self.one = lambda rows, strength: _fit_one(kind, counts, rows, y, weight, labels, strength)
        self.design = (lambda rows: _ridge_design(counts, rows, y, weight)) if kind == "regressor" else None
        self.pool, self.directory = None, None
        if jobs > 1 and kind == "regressor":
            self.pool = ThreadPoolExecutor(max_workers=jobs)
        elif jobs > 1 and counts.nnz >= PROCESS_MIN_TERMS:
            import multiprocessing
            import tempfile
            from concurrent.futures import ProcessPoolExecutor

            from jobcast.storage import scratch_path

            # named by this process, so a later training removes it if this one is killed (SIGKILL skips __exit__)
            self.directory = str(scratch_path(Path(tempfile.gettempdir()), "jobcast-text"))
            os.mkdir(self.directory)
            for name in ("data", "indices", "indptr"):
                np.save(os.path.join(self.directory, f"{name}.npy"), getattr(counts, name))
            # forkserver: a worker starts from a clean process, not a fork of this one (its JVM gateway's threads),
            # preloaded with this module rather than the caller's __main__ (a CLI, Airflow's task runner, pytest).
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([__name__])
            self.pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context,
                                            initializer=_worker_init,
                                            initargs=(self.directory, counts.shape, kind, y, weight, labels))

    def map(self, pairs: list[tuple[np.ndarray | None, float]]) -> list[TextModel]:
        if self.pool is None:
            return [self.one(rows, c) for rows, c in pairs]
        if isinstance(self.pool, ThreadPoolExecutor):
            return list(self.pool.map(self.one, *zip(*pairs)))
        from concurrent.futures.process import BrokenProcessPool

        try:
            return list(self.pool.map(_worker_fit, *zip(*pairs)))
        except BrokenProcessPool as exc:  # e.g. a worker killed for memory, or a script without a __main__ guard
            log.warning("text model fit workers failed (%s): fitting in this process, one at a time", exc)
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None
            return self.map(pairs)

    def grid(self, rows: np.ndarray | None, strengths: list[float]) -> list[TextModel]:
        """The fits of one set of rows at several strengths. A regressor's share one design (its TF-IDF matrix), so
        the grid holds one matrix, not one per fit running at once; each gives what fitting it alone gives."""
        if self.design is None:
            return self.map([(rows, c) for c in strengths])
        design = self.design(rows)
        if self.pool is None:
            return [_ridge_solve(design, c) for c in strengths]
        return list(self.pool.map(lambda c: _ridge_solve(design, c), strengths))

    def __enter__(self) -> "_Fits":
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        if self.directory is not None:
            import shutil

            shutil.rmtree(self.directory, ignore_errors=True)


def sample_rows(n: int, max_rows: int, groups: np.ndarray | None, seed: int) -> np.ndarray:
    """Sorted positions of at most max_rows of n rows, drawn at random (seeded), whole groups at a time."""
    rng = np.random.default_rng([seed, 1])
    if groups is None:
        return np.sort(rng.choice(n, size=max_rows, replace=False))
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    sizes = np.bincount(g)
    order = rng.permutation(len(sizes))
    taken = order[np.cumsum(sizes[order]) <= max_rows]
    return np.flatnonzero(np.isin(g, taken))


def fit_out_of_fold(kind: str, counts, y: np.ndarray, *, strength: float | list[float], folds: int = 5, seed: int = 7,
                    groups: np.ndarray | None = None, weight: np.ndarray | None = None,
                    labels: list[str] | None = None, jobs: int | None = None,
                    max_rows: int | None = None) -> tuple[np.ndarray, TextModel]:
    """Out-of-fold scores of every row and the model fitted on all rows.

    With max_rows below the rows' number, the model learns from a random sample of max_rows rows (whole groups):
    the sample's rows get out-of-fold scores, the others the scores of the model fitted on the whole sample,
    which never saw them either. A fit's time and memory follow its rows, so this bounds them on a big board
    (train.text_max_rows), whatever rows the booster is given.

    kind "classifier": y holds class codes into `labels`; "regressor": y is the target. `groups` keeps the rows
    of one group (a posting) in one fold. `strength` is LinearSVC's C or ridge's alpha. Given a list, each value
    is fitted without the first fold and scored on it (accuracy, or weighted squared error), and the best one
    is fitted on the other folds and on all rows: boards differ in how much text they have and how noisy their
    labels are, so the regularisation is chosen on the board's own data. Choosing on one fold costs one fit
    per value, where choosing on all of them cost a whole out-of-fold pass per value (18 fits of 155k
    postings, 18 minutes, for category's three)."""
    grid = [float(x) for x in strength] if isinstance(strength, (list, tuple)) else [float(strength)]
    if kind not in ("classifier", "regressor"):
        raise ModelError(f"text model kind {kind!r}: expected classifier or regressor")
    if max_rows is not None and counts.shape[0] > max_rows:
        keep = sample_rows(counts.shape[0], int(max_rows), groups, seed)
        pick = (lambda a: None if a is None else np.asarray(a)[keep])
        oof_kept, model = fit_out_of_fold(kind, counts[keep], pick(y), strength=strength, folds=folds, seed=seed,
                                          groups=pick(groups), weight=pick(weight), labels=labels, jobs=jobs)
        oof = np.empty((counts.shape[0], oof_kept.shape[1]))
        oof[keep] = oof_kept
        rest = np.ones(counts.shape[0], dtype=bool)
        rest[keep] = False
        rest = np.flatnonzero(rest)
        for r0 in range(0, len(rest), 65536):  # the TF-IDF rows of a slice at a time
            part = rest[r0:r0 + 65536]
            oof[part] = model.scores(counts[part])
        log.info("text model %s: learnt from %d of %d rows (max_rows); the others scored by the model of all %d",
                 kind, len(keep), counts.shape[0], len(keep))
        return oof, model
    labels = list(labels or [])
    jobs = jobs or os.cpu_count() or 1
    n = counts.shape[0]
    g = np.arange(n) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
    fold_of_group = np.random.default_rng(seed).permutation(g.max() + 1) % folds
    fold = fold_of_group[g]  # fold 0 always has rows: the group drawn 0 is in it
    width = len(labels) if kind == "classifier" else int(np.asarray(y).reshape(len(y), -1).shape[1])
    oof = np.zeros((n, width))
    for k in range(folds):
        if kind == "classifier" and len(np.unique(y[fold != k])) < 2:
            raise ModelError(f"text model: fold {k} has fewer than 2 classes to learn from; expected more labelled rows")

    def rows_of(k: int) -> np.ndarray | None:  # k == folds: every row
        return None if k == folds else np.flatnonzero(fold != k)

    fitted: dict[int, TextModel | None] = {k: None for k in range(folds) if not np.any(fold == k)}
    strength = grid[0]
    with _Fits(kind, counts, y, weight, labels, max(1, min(jobs, folds + 1))) as fits:
        if len(grid) > 1:
            held = np.flatnonzero(fold == 0)
            trials = fits.grid(rows_of(0), grid)
            scores = [_fit_score(kind, m.scores(counts[held]), y[held], None if weight is None else weight[held])
                      for m in trials]
            best = int(np.argmax(scores))  # the first best (the grid's order breaks ties)
            log.info("text model %s: strength %s chosen on fold 0 of %d (scores %s)", kind, grid[best], folds,
                     {c: round(v, 5) for c, v in zip(grid, scores)})
            strength, fitted[0] = grid[best], trials[best]
            del trials
        rest = [k for k in range(folds + 1) if k not in fitted]
        fitted.update(zip(rest, fits.map([(rows_of(k), strength) for k in rest])))
    for k in range(folds):
        if fitted[k] is not None:
            out_rows = np.flatnonzero(fold == k)
            oof[out_rows] = fitted[k].scores(counts[out_rows])
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
