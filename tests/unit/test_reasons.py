"""Reasons: path attribution adds up exactly to LightGBM's raw score, for every objective jobcast uses, and the
reasons JSON names the strongest contributions, splits a stacked text score into its terms and adds up."""

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from jobcast.models.reasons import Column, PathExplainer, explain, term_name, wanted_terms
from jobcast.models.text_model import fit_out_of_fold

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("objective, num_class", [("regression", 1), ("cross_entropy", 1), ("binary", 1), ("multiclass", 3)])
def test_path_attributions_add_up_to_the_raw_score(objective, num_class):
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    X = rng.random((1500, 5))
    X[rng.random(X.shape) < 0.1] = np.nan  # missing values take the default branch
    X[:, 4] = rng.integers(0, 6, len(X))
    signal = np.nan_to_num(X[:, 0]) * 2 + (X[:, 4] == 2) + rng.normal(0, 0.2, len(X))
    y = {"regression": signal, "cross_entropy": 1 / (1 + np.exp(-signal + 1.5)), "binary": (signal > 1.5).astype(float),
         "multiclass": np.digitize(signal, [1, 2]).astype(float)}[objective]
    params = {"objective": objective, "num_leaves": 7, "verbosity": -1, **({"num_class": 3} if num_class > 1 else {})}
    booster = lgb.train(params, lgb.Dataset(X, y, categorical_feature=[4]), num_boost_round=60)
    raw = booster.predict(X, raw_score=True)
    e = PathExplainer(booster, num_class)
    if num_class > 1:
        klass = raw.argmax(axis=1)
        contrib, base = e.contributions(X, klass)
        raw = raw[np.arange(len(X)), klass]
    else:
        contrib, base = e.contributions(X)
    assert np.abs(base + np.asarray(contrib.sum(axis=1)).ravel() - raw).max() < 1e-9
    assert contrib.shape == (len(X), 5)


def test_reasons_name_features_and_split_a_text_score_into_its_terms():
    import lightgbm as lgb

    rng = np.random.default_rng(1)
    n, vocab = 1200, 50
    counts = sp.random(n, vocab, density=0.1, format="csr", random_state=2)
    counts.data[:] = 1.0
    y = np.asarray(counts[:, 3].todense()).ravel() * 2.0 + rng.normal(0, 0.1, n)
    oof, text = fit_out_of_fold("regressor", counts, y, strength=1.0, folds=3)
    pref = rng.choice(["東京都", "大阪府"], n)
    X = np.column_stack([(pref == "東京都").astype(float), oof[:, 0]])
    booster = lgb.train({"objective": "regression", "num_leaves": 7, "verbosity": -1}, lgb.Dataset(X, y + (pref == "東京都")),
                        num_boost_round=40)
    contrib, base = PathExplainer(booster).contributions(X)
    raw = base + np.asarray(contrib.sum(axis=1)).ravel()
    df = pd.DataFrame({"prefecture": pref})
    columns = [Column("prefecture", categorical="prefecture"), Column("text", text=(text, 0))]
    terms = {3: "tcエンジ"}
    out = [json.loads(r) for r in explain(contrib, base, raw, columns, df, counts, terms, "log salary")]
    for r, v in zip(out, raw):
        assert 1 <= len(r["top"]) <= 3 and all(e["name"] for e in r["top"])
        assert abs(r["base"] + sum(e["effect"] for e in r["top"]) + r["rest"] - v) < 1e-5
        assert abs(r["value"] - v) < 1e-5
    names = {e["name"] for r in out for e in r["top"]}
    assert {"prefecture: 東京都", "title: エンジ"} <= names  # a categorical's value, a hashed term's n-gram


def test_term_names_and_the_terms_worth_naming():
    assert term_name("dw未経験歓迎", 7) == "description: 未経験歓迎" and term_name("T=営業事務", 1) == "title is: 営業事務"
    assert term_name(None, 42) == "text term #42"

    class M:
        coef = np.array([[0.0, 5.0, -9.0, 0.1]])

        class tfidf:
            columns = np.array([10, 11, 12, 13])

    assert wanted_terms({"m": M()}, extra=[99], per_output=2) == [11, 12, 99]
