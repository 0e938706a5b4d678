"""The stacked text model's fitting: TF-IDF of a subset of rows, and the regularisation chosen on one fold."""

import numpy as np
import pytest
from sklearn.preprocessing import normalize

from jobcast.models.text_model import Tfidf, fit_out_of_fold, terms_matrix


def _counts(n: int, seed: int = 0, width: int = 1 << 10):
    rng = np.random.default_rng(seed)
    lists = [rng.integers(0, 600, rng.integers(0, 25)) for _ in range(n)]
    lists[3], lists[7] = np.array([], dtype=np.int64), None  # postings without text
    return terms_matrix(lists, width)


def _reference(tfidf: Tfidf, counts):
    """TF-IDF as written out by hand: sublinear tf, the model's idf, L2 rows, over the kept columns."""
    x = counts[:, tfidf.columns].astype(np.float64)
    x.data = (1.0 + np.log(x.data)) * tfidf.idf[x.indices]
    return normalize(x, norm="l2").toarray() if x.shape[0] else x.toarray()


@pytest.mark.parametrize("rows", [None, "some", "mask", "none"])
def test_tfidf_of_some_rows_is_the_tfidf_of_those_rows(rows):
    counts = _counts(300)
    tfidf = Tfidf.fit(counts[:150])  # fitted on half: the other half has terms it never saw (dropped)
    picked = {None: None, "some": np.array([299, 3, 3, 0, 150, 7]), "mask": np.arange(300) % 3 == 0,
              "none": np.zeros(300, dtype=bool)}[rows]
    expected = _reference(tfidf, counts if picked is None else counts[picked])
    for dtype, tol in ((np.float32, 1e-6), (np.float64, 1e-7)):
        x = tfidf.transform(counts if picked is None else counts[picked], dtype=dtype)
        assert x.dtype == dtype and x.shape == expected.shape
        np.testing.assert_allclose(x.toarray(), expected, atol=tol)


def test_the_strength_chosen_on_one_fold_gives_what_fitting_that_strength_alone_gives():
    rng = np.random.default_rng(1)
    n = 600
    y = rng.choice(3, n, p=[0.7, 0.2, 0.1])
    # The label's own term plus noise terms: little regularisation is right, a tiny C predicts the majority.
    counts = terms_matrix([[int(c), 10 + int(rng.integers(0, 200)), 10 + int(rng.integers(0, 200))] for c in y], 1 << 10)
    groups = rng.integers(0, 200, n)  # a posting's rows stay in one fold
    oof, model = fit_out_of_fold("classifier", counts, y, strength=[1e-5, 1.0], groups=groups, labels=["a", "b", "c"])
    assert model.strength == 1.0
    alone_oof, alone = fit_out_of_fold("classifier", counts, y, strength=1.0, groups=groups, labels=["a", "b", "c"])
    np.testing.assert_array_equal(oof, alone_oof)  # the chosen fold-0 fit is reused, not refitted differently
    np.testing.assert_array_equal(model.coef, alone.coef)
    assert model.temperature == alone.temperature
    assert np.mean(np.argmax(oof, axis=1) == y) > 0.9

    # A regressor whose target is noise: the strongest regularisation wins (scored by squared error).
    target = rng.normal(size=n)
    oof, ridge = fit_out_of_fold("regressor", counts, target, strength=[1e-3, 1e3], groups=groups)
    assert ridge.strength == 1e3
    # The grid's fits share one design (the TF-IDF matrix): each equals fitting its strength alone, weighted too.
    alone_oof, alone = fit_out_of_fold("regressor", counts, target, strength=1e3, groups=groups)
    np.testing.assert_array_equal(oof, alone_oof)
    np.testing.assert_array_equal(ridge.coef, alone.coef)
    views = rng.integers(1, 50, n).astype(float)
    for jobs in (1, 2):
        oof, ridge = fit_out_of_fold("regressor", counts, y.astype(float), strength=[0.1, 1.0, 10.0], groups=groups,
                                     weight=views, jobs=jobs)
        alone_oof, alone = fit_out_of_fold("regressor", counts, y.astype(float), strength=ridge.strength, groups=groups,
                                           weight=views, jobs=jobs)
        np.testing.assert_array_equal(oof, alone_oof)
        np.testing.assert_array_equal(ridge.coef, alone.coef)


def test_classifier_fits_are_reproducible_in_worker_processes(monkeypatch):
    """liblinear's one random generator per process made fits on threads differ from run to run: the fits run in
    worker processes (or one after another), and give what one process fitting them in turn gives."""
    import jobcast.models.text_model as tm

    rng = np.random.default_rng(2)
    n = 900
    y = rng.integers(0, 4, n)
    counts = terms_matrix([[int(c)] * int(rng.integers(1, 3)) + list(rng.integers(10, 400, 12)) for c in y], 1 << 10)
    serial = fit_out_of_fold("classifier", counts, y, strength=[0.1, 1.0], labels=list("abcd"), jobs=1)
    monkeypatch.setattr(tm, "PROCESS_MIN_TERMS", 0)
    for _ in range(2):
        oof, model = fit_out_of_fold("classifier", counts, y, strength=[0.1, 1.0], labels=list("abcd"), jobs=2)
        np.testing.assert_array_equal(oof, serial[0])
        np.testing.assert_array_equal(model.coef, serial[1].coef)
        assert model.strength == serial[1].strength


def test_weighted_ridge_is_sklearns_weighted_ridge():
    """Rows scaled by sqrt(weight) in place (no copy of the matrix) fit what Ridge(sample_weight=...) fits."""
    from sklearn.linear_model import Ridge

    from jobcast.models.text_model import _fit_one

    rng = np.random.default_rng(3)
    counts = _counts(400)
    y = rng.normal(size=400)
    weight = rng.integers(1, 50, 400).astype(float)  # views
    model = _fit_one("regressor", counts, None, y, weight, [], 3.0)
    x = model.tfidf.transform(counts, dtype=np.float64)
    w = weight / weight.mean()
    mean = np.average(y, weights=weight)
    ref = Ridge(alpha=3.0, fit_intercept=False, solver="lsqr", tol=1e-10).fit(x, y - mean, sample_weight=w)
    np.testing.assert_allclose(model.coef[0], ref.coef_, atol=1e-3)
    assert model.intercept[0] == pytest.approx(mean)


def _die(rows, strength):  # a fit worker killed mid-fit (out of memory, a signal)
    import os

    os._exit(9)


def test_fits_fall_back_to_this_process_when_the_workers_die(monkeypatch, caplog):
    import jobcast.models.text_model as tm

    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 300)
    counts = terms_matrix([[int(c)] + list(rng.integers(10, 300, 8)) for c in y], 1 << 10)
    serial = fit_out_of_fold("classifier", counts, y, strength=1.0, labels=list("abc"), jobs=1, folds=3)
    monkeypatch.setattr(tm, "PROCESS_MIN_TERMS", 0)
    monkeypatch.setattr(tm, "_worker_fit", _die)  # the pool pickles it by name: workers import this module
    with caplog.at_level("WARNING", logger="jobcast.models.text_model"):
        oof, model = fit_out_of_fold("classifier", counts, y, strength=1.0, labels=list("abc"), jobs=2, folds=3)
    assert "fit workers failed" in caplog.text
    np.testing.assert_array_equal(oof, serial[0])
    np.testing.assert_array_equal(model.coef, serial[1].coef)


def test_rows_scaled_block_by_block_equal_rows_scaled_at_once():
    from jobcast.models.text_model import _scale_rows

    counts = _counts(50).astype(np.float64)
    factor = np.random.default_rng(4).random(50)
    expected = counts.data * np.repeat(factor, np.diff(counts.indptr))
    for rows in (1, 7, 50, 8192):
        x = counts.copy()
        _scale_rows(x, factor, rows=rows)
        np.testing.assert_array_equal(x.data, expected)  # the same products, bit for bit


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_a_text_model_bounded_by_max_rows_learns_from_a_sample_and_scores_the_other_rows_out_of_sample(kind):
    rng = np.random.default_rng(3)
    n, bound = 900, 400
    y = rng.choice(3, n, p=[0.5, 0.3, 0.2])
    counts = terms_matrix([[int(c), 10 + int(rng.integers(0, 200))] for c in y], 1 << 10)
    groups = rng.integers(0, 300, n)  # whole groups are drawn: a posting's rows stay together
    target = y if kind == "classifier" else y.astype(float) + rng.normal(scale=0.1, size=n)
    weight = None if kind == "classifier" else rng.integers(1, 9, n).astype(float)
    labels = ["a", "b", "c"] if kind == "classifier" else None
    oof, model = fit_out_of_fold(kind, counts, target, strength=1.0, groups=groups, weight=weight, labels=labels,
                                 max_rows=bound)
    # The same sample, fitted alone, gives the same model and the same out-of-fold scores of its rows.
    from jobcast.models.text_model import sample_rows

    sample = sample_rows(n, bound, groups, 7)
    assert 0 < len(sample) <= bound and len(np.unique(sample)) == len(sample)
    drawn = np.isin(groups, groups[sample])
    assert np.array_equal(np.flatnonzero(drawn), sample)  # every row of a drawn group, none of the others
    pick = (lambda a: None if a is None else a[sample])
    alone_oof, alone = fit_out_of_fold(kind, counts[sample], target[sample], strength=1.0, groups=groups[sample],
                                       weight=pick(weight), labels=labels)
    np.testing.assert_array_equal(model.coef, alone.coef)
    np.testing.assert_array_equal(oof[sample], alone_oof)
    # The rows outside the sample: the whole-sample model's scores (it never saw them).
    rest = np.flatnonzero(~drawn)
    np.testing.assert_allclose(oof[rest], model.scores(counts[rest]))
    # Without a bound, or a bound above the rows, every row is learnt from.
    unbounded, _ = fit_out_of_fold(kind, counts, target, strength=1.0, groups=groups, weight=weight, labels=labels)
    same, _ = fit_out_of_fold(kind, counts, target, strength=1.0, groups=groups, weight=weight, labels=labels,
                              max_rows=n)
    np.testing.assert_array_equal(unbounded, same)
