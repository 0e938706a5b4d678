"""The category model's final probabilities blend the booster with the calibrated linear text model, the share
chosen on the early-stopping tail: whichever component carries the board's signal gets the weight."""

import lightgbm as lgb
import numpy as np

from jobcast.models.task_models import BLEND_WEIGHTS, blend_weight
from jobcast.models.text_model import fit_out_of_fold, terms_matrix


def _board(text_informative: bool, n: int = 900, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    words = y if text_informative else rng.integers(0, 3, n)
    counts = terms_matrix([[int(w), 10 + int(rng.integers(0, 50))] for w in words], 1 << 10)
    oof, text = fit_out_of_fold("classifier", counts, y, strength=0.5, labels=["a", "b", "c"])
    signal = (y if not text_informative else rng.integers(0, 3, n)).astype(float)
    X = np.column_stack([signal, oof])
    return X, y, text


def _booster(X, y, fit_rows, label=None):
    params = {"objective": "multiclass", "num_class": 3, "verbose": -1, "num_threads": 1, "min_data_in_leaf": 5}
    return lgb.train(params, lgb.Dataset(X[fit_rows], label=(y if label is None else label)[fit_rows]), num_boost_round=30)


def test_the_text_model_takes_the_weight_when_the_booster_learned_nothing():
    X, y, text = _board(text_informative=True)
    fit_rows, stop = np.arange(800), np.arange(800, 900)
    noise = np.random.default_rng(1).permutation(y)  # a booster fitted on shuffled labels knows nothing
    blend = blend_weight(_booster(X, y, fit_rows, noise), X, stop, y, text, [1, 2, 3])
    assert blend["booster_weight"] == 0.0
    assert [c["booster_weight"] for c in blend["candidates"]] == list(BLEND_WEIGHTS) and blend["rows"] == 100


def test_the_booster_takes_the_weight_when_the_signal_is_outside_the_text():
    X, y, text = _board(text_informative=False)
    fit_rows, stop = np.arange(800), np.arange(800, 900)
    blend = blend_weight(_booster(X, y, fit_rows), X, stop, y, text, [1, 2, 3])
    assert blend["booster_weight"] == 1.0
    best = min(blend["candidates"], key=lambda c: c["log_loss"])
    assert best["accuracy"] > 0.95
