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
    # the raw scores of every class come out of the same leaves (category's probabilities with its reasons)
    full = booster.predict(X, raw_score=True).reshape(len(X), num_class)
    assert np.abs(e.raw(e.leaves(X)) - full).max() < 1e-9


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


def _reference(contrib, base, raw, columns, df, counts, terms):
    """The reasons' items of each row by the definition, one row at a time: {name: effect}."""
    from jobcast.models.reasons import term_name

    contrib = contrib.toarray()
    out = []
    for i in range(len(contrib)):
        items: dict[str, float] = {}
        for j, c in enumerate(contrib[i]):
            if c == 0:
                continue
            col = columns[j]
            if col.text is not None:
                model, o = col.text
                o = o if np.isscalar(o) else int(o[i])
                x = model.tfidf.transform(counts).toarray()[i]
                lin = np.abs(x * model.coef[o])
                if lin.sum() > 0:
                    for t in np.flatnonzero(lin):
                        name = term_name(terms.get(int(model.tfidf.columns[t])), int(model.tfidf.columns[t]))
                        items[name] = items.get(name, 0.0) + c * lin[t] / lin.sum()
                    continue
                name = col.name
            elif col.categorical is not None:
                v = df[col.categorical].iloc[i]
                name = f"{col.name}: {v if v is not None and v == v else '(none)'}"
            else:
                name = col.name
            items[name] = items.get(name, 0.0) + c
        out.append(items)
    return out


def test_batched_reasons_match_the_definition_row_by_row():
    """The vectorised explain (no loop per row) against the definition: same top names, effects, rest, for a
    multi-output text model read through a fixed and a per-row output, repeated names, a missing value."""
    rng = np.random.default_rng(3)
    n, vocab = 300, 40
    counts = sp.random(n, vocab, density=0.15, format="csr", random_state=4)
    counts.data[:] = 1.0
    counts = (sp.diags((np.arange(n) != 7).astype(float)) @ counts).tocsr()  # row 7 has no terms: its score stays "text"
    counts.eliminate_zeros()
    y = np.column_stack([np.asarray(counts[:, 3].todense()).ravel(), np.asarray(counts[:, 5].todense()).ravel()])
    _, text = fit_out_of_fold("regressor", counts, y + rng.normal(0, 0.1, y.shape), strength=1.0, folds=3)
    per_row = rng.integers(0, 2, n)
    columns = [Column("views"), Column("prefecture", categorical="prefecture"), Column("text", text=(text, 0)),
               Column("text", text=(text, 1)), Column("text", text=(text, per_row)), Column("views")]
    contrib = sp.csr_matrix(rng.normal(0, 1, (n, len(columns))) * (rng.random((n, len(columns))) < 0.7))
    base = rng.normal(0, 1, n)
    raw = base + np.asarray(contrib.sum(axis=1)).ravel()
    df = pd.DataFrame({"prefecture": rng.choice(np.array(["東京都", "大阪府", None], dtype=object), n)})
    terms = {3: "tcエンジ", 4: "twエンジニア", 5: "twエンジニア"}  # two terms, one name: their effects add up
    got = [json.loads(r) for r in explain(contrib, base, raw, columns, df, counts, terms, "s")]
    for r, items, v, b in zip(got, _reference(contrib, base, raw, columns, df, counts, terms), raw, base):
        want = sorted(items.items(), key=lambda kv: -abs(kv[1]))[:3]
        assert [e["name"] for e in r["top"]] == [k for k, _ in want]
        assert np.allclose([e["effect"] for e in r["top"]], [e for _, e in want], atol=2e-6)
        assert abs(r["rest"] - (v - b - sum(e for _, e in want))) < 1e-5 and abs(r["value"] - v) < 1e-6
    assert any(e["name"] == "prefecture: (none)" for r in got for e in r["top"])
    assert any(e["name"] == "title: エンジニア" for r in got for e in r["top"])
