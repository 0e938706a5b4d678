"""What every task's model shares: the stacked text models, the boosters' fit and early stopping, the
category blend, a loaded model version (Predictor) and the metrics. What differs per task is declared in
jobcast.tasks (its rows, label, objective, outputs, metrics); these are the building blocks it calls.

Every task stacks: a linear model over TF-IDF of the text (jobcast.models.text_model), fitted out of fold,
hands its scores to the LightGBM booster next to the structured features.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from jobcast.errors import ModelError
from jobcast.models.matrix import FeatureSchema

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from jobcast.models.text_model import TextModel
    from jobcast.tasks.base import Task

LGB_KEYS = ("learning_rate", "num_leaves", "min_data_in_leaf", "min_sum_hessian_in_leaf", "feature_fraction",
            "bagging_fraction", "bagging_freq", "lambda_l2", "max_bin", "seed")
SAMPLE_WEIGHT = "sample_weight"  # a training row sampled with fraction f stands for 1/f rows
HOLDOUT = "_jc_holdout"  # the training frame's boolean column: the row is in the time-based holdout


def lgb_params(params: dict[str, Any], **fixed: Any) -> dict[str, Any]:
    out = {k: params[k] for k in LGB_KEYS if k in params}
    out.update(verbosity=-1, num_threads=0, deterministic=True, force_row_wise=True, **fixed)
    return out


def split(df: pd.DataFrame, order: str) -> tuple[np.ndarray, np.ndarray]:
    """Row positions to fit on and a time-ordered tail (10%) for early stopping / calibration."""
    idx = np.argsort(df[order].to_numpy(), kind="stable")
    cut = int(len(idx) * 0.9)
    return idx[:cut], idx[cut:]


def _histograms(lgb_params: dict, X) -> dict:
    """Column-wise histograms for a sparse matrix (salary's 1,024 term columns: its booster 95.9 s -> 62.9 s on
    the 100k board, the same trees), row-wise for a dense one (cvr's 15 columns over a million rows)."""
    import scipy.sparse as sp

    if sp.issparse(X):
        return {**lgb_params, "force_row_wise": False, "force_col_wise": True}
    return lgb_params


def fit_booster(lgb_params: dict, X, categorical: list[int], label: np.ndarray, weight: np.ndarray | None,
         params: dict[str, Any], fit: np.ndarray, stop: np.ndarray):
    """Early stopping on the tail rows; the holdout stays untouched."""
    import lightgbm as lgb

    t0 = time.monotonic()
    lgb_params = _histograms(lgb_params, X)
    w = (lambda rows: None if weight is None else weight[rows])
    dtrain = lgb.Dataset(X[fit], label=label[fit], weight=w(fit), categorical_feature=categorical, free_raw_data=False)
    dvalid = lgb.Dataset(X[stop], label=label[stop], weight=w(stop), reference=dtrain)
    booster = lgb.train(lgb_params, dtrain, num_boost_round=int(params.get("num_boost_round", 1000)), valid_sets=[dvalid],
                        callbacks=[lgb.early_stopping(int(params.get("early_stopping_rounds", 50)), verbose=False)])
    log.info("booster %s: %d rounds (best %d) on %d rows x %d columns in %.1fs", lgb_params.get("objective"),
             booster.current_iteration(), booster.best_iteration or 0, len(fit), X.shape[1], time.monotonic() - t0)
    return booster


def row_bound(params: dict[str, Any], key: str) -> int | None:
    """A row bound of the training params (text_max_rows, refit_max_rows): an integer >= 1,000, or None."""
    from jobcast.errors import ConfigError

    value = params.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1000:
        raise ConfigError(f"params.yaml train.{key} (or a task's own {key}) = {value!r}: expected an integer >= 1000, "
                          "or null for no bound")
    return value


def refit_booster(lgb_params: dict, X, categorical: list[int], label: np.ndarray, stopped, params: dict[str, Any]):
    """The early-stopping tail is the newest data: with refit_on_all_rows, refit on every row for the
    early-stopped number of rounds (+10% for the larger set). Not above refit_max_rows rows: there the tail adds
    little to what the booster learnt, and the refit cost as much as the fit (226 s of salary's 1,058 s on the
    300k bench board's 200k rows). Returns the early-stopped booster when it does not refit."""
    import lightgbm as lgb

    bound = row_bound(params, "refit_max_rows")
    if not params.get("refit_on_all_rows"):
        return stopped
    if bound is not None and X.shape[0] > bound:
        log.info("booster not refitted: %d training rows > refit_max_rows %d", X.shape[0], bound)
        return stopped
    t0 = time.monotonic()
    lgb_params = _histograms(lgb_params, X)
    rounds = max(1, int((stopped.best_iteration or stopped.current_iteration()) * 1.1))
    booster = lgb.train(lgb_params, lgb.Dataset(X, label=label, categorical_feature=categorical), num_boost_round=rounds)
    log.info("booster refit on all %d rows: %d rounds in %.1fs", X.shape[0], rounds, time.monotonic() - t0)
    return booster


def _text_frame(models: dict[str, "TextModel"], counts) -> tuple[np.ndarray, list[str]]:
    """The stacked columns the booster sees, from each text model's scores, and their names."""
    cols, names = [], []
    for name, m in models.items():
        if name == "category_hint":  # a guess of the category: its code (categorical), its and every class's probability
            p = m.probabilities(counts)
            cols += [np.argmax(p, axis=1).astype(float), p.max(axis=1)] + [p[:, j] for j in range(p.shape[1])]
            names += ["text_category", "text_category_prob"] + [f"text_category_p{j}" for j in range(p.shape[1])]
        else:
            s = m.scores(counts)
            cols += [s[:, j] for j in range(s.shape[1])]
            names += [f"{name}_{j}" for j in range(s.shape[1])] if s.shape[1] > 1 else [name]
    return (np.column_stack(cols) if cols else np.empty((counts.shape[0], 0))), names


def _oof_frame(name: str, oof: np.ndarray, model) -> np.ndarray:
    """Out-of-fold scores in the same layout as _text_frame."""
    if name == "category_hint":
        from jobcast.models.text_model import softmax

        p = softmax(model.temperature * oof)
        return np.column_stack([np.argmax(p, axis=1).astype(float), p.max(axis=1), p])
    return oof


def _with_terms(X: np.ndarray, counts, terms) -> Any:
    """CSR of X next to the presence (0/1) of the given terms. NaN stays explicit: CSR stores it as a value."""
    import scipy.sparse as sp

    present = counts[:, terms]
    present.data[:] = 1.0
    return sp.hstack([sp.csr_matrix(X), present], format="csr")


def _dropout(dense: np.ndarray, schema: FeatureSchema, params: dict[str, Any]) -> np.ndarray:
    """Training rows whose filed category is hidden at random (train.<task>.category_dropout): the booster learns
    what to do when a board leaves it empty (lean on the text model's guess) instead of never seeing it missing."""
    share = float(params.get("category_dropout", 0.0))
    if share <= 0 or "category_filed" not in schema.categorical:
        return dense
    j = len(schema.numeric) + list(schema.categorical).index("category_filed")
    out = dense.copy()
    hide = np.random.default_rng(int(params.get("seed", 7))).random(len(out)) < share
    out[hide, j] = np.nan
    return out


# ---------------------------------------------------------------------------------------------- fitting
def category_codes(values: pd.Series, labels: list[str]) -> np.ndarray:
    return pd.Categorical(values.astype(str), categories=labels).codes.astype(int)


def labels_of(values: pd.Series, task: str) -> list[str]:
    labels = sorted(values.dropna().astype(str).unique().tolist())
    if len(labels) < 2:
        raise ModelError(f"{task}: the training rows have {len(labels)} distinct filed categories; need >= 2")
    return labels


def stack(schema: FeatureSchema, df: pd.DataFrame, params: dict[str, Any], specs: dict[str, dict]) -> tuple:
    """Fit the task's text models out of fold; returns (booster matrix of the training rows, categorical
    indices, text models, stacked column names).

    specs: name -> {kind, y, labels, groups, weight, rows, expand}. A model learns from `rows` (a mask or row
    positions; default all). With `expand` (for every row of df, a position in `rows`), each row takes the
    out-of-fold score of that position (cvr: one text row per posting, whose score every (posting, day) row
    shares); without it, rows the model did not learn from get the full model's scores (they were never in its
    training set)."""
    from jobcast.models.text_model import fit_out_of_fold

    k = int(params.get("booster_terms", 0))
    everything = schema.text_counts(df) if k or any("expand" not in s for s in specs.values()) else None
    models, blocks, names = {}, [], []
    for name, spec in specs.items():
        rows = np.asarray(spec.get("rows", np.ones(len(df), dtype=bool)))
        rows = np.flatnonzero(rows) if rows.dtype == bool else rows
        if everything is None:
            counts = schema.text_counts(df.iloc[rows])
        else:  # a copy only when the model learns from some rows (a full copy was 0.7 GB at 155k postings)
            counts = everything if np.array_equal(rows, np.arange(len(df))) else everything[rows]
        strength = params.get("text_c" if spec["kind"] == "classifier" else "text_alpha", 1.0)
        t0 = time.monotonic()
        oof, model = fit_out_of_fold(spec["kind"], counts, spec["y"], strength=strength,
                                     folds=int(params.get("text_folds", 5)), seed=int(params.get("seed", 7)),
                                     groups=spec.get("groups"), weight=spec.get("weight"), labels=spec.get("labels"),
                                     jobs=params.get("text_workers"), max_rows=row_bound(params, "text_max_rows"))
        log.info("text model %s (%s): %d rows x %d terms, out of fold in %.1fs", name, spec["kind"], counts.shape[0],
                 counts.shape[1], time.monotonic() - t0)
        if "expand" in spec:
            block = _oof_frame(name, oof, model)[spec["expand"]]
        else:
            block, _ = _text_frame({name: model}, everything)
            block[rows] = _oof_frame(name, oof, model)
        models[name] = model
        blocks.append(block)
        names += _text_frame({name: model}, counts[:1])[1]
    dense = _dropout(schema.dense(df), schema, params)
    X = np.hstack([dense, *blocks])
    if k:  # the commonest terms themselves too: trees find interactions (a role word x a region) a linear model cannot
        top = np.argsort(-np.bincount(everything.indices, minlength=everything.shape[1]), kind="stable")[:k]
        X = _with_terms(X, everything, top)
        models["__terms__"] = top
    categorical = [*schema.categorical_indices, *(dense.shape[1] + i for i, n in enumerate(names) if n == "text_category")]
    return X, categorical, models, names


BLEND_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def blend_weight(booster, X, stop_rows: np.ndarray, codes: np.ndarray, text, columns: list[int]) -> dict[str, Any]:
    """The booster's share in the category probabilities, w * booster + (1 - w) * text model, chosen by log-loss
    on the early-stopping tail (rows neither model fitted: the text scores there are out of fold).

    On a board whose only signal is the text, trees over the linear model's scores lose to the calibrated
    linear model itself (0.5-2 points of accuracy on the real-data bench); on a board with other signal
    (region, employer, salary) the booster wins by far more. The board's own tail decides, per training."""
    from jobcast.models.text_model import softmax

    Xs = X[stop_rows]
    oof = Xs[:, columns]
    oof = np.asarray(oof.toarray() if hasattr(oof, "toarray") else oof, dtype=float)
    p_text = softmax(text.temperature * oof)
    p_boost = booster.predict(Xs, num_iteration=booster.best_iteration or None).reshape(len(stop_rows), -1)
    y = codes[stop_rows]
    rows = np.arange(len(y))
    table = []
    for w in BLEND_WEIGHTS:
        p = w * p_boost + (1 - w) * p_text
        table.append({"booster_weight": w, "log_loss": round(-float(np.mean(np.log(np.clip(p[rows, y], 1e-12, 1)))), 5),
                      "accuracy": round(float(np.mean(p.argmax(axis=1) == y)), 5)})
    best = min(table, key=lambda r: (r["log_loss"], -r["booster_weight"]))
    return {"booster_weight": best["booster_weight"], "rows": int(len(y)), "candidates": table}


def save(directory: Path, boosters: dict[str, Any], schema: FeatureSchema, extras: dict[str, Any]) -> dict[str, Any]:
    """Write the model files; returns the JSON-safe extras (for the registry metadata)."""
    from jobcast.models.text_model import describe

    for name, booster in boosters.items():
        booster.save_model(str(directory / f"{name}.txt"), num_iteration=booster.best_iteration or None)
    extras = dict(extras)
    models = dict(extras.pop("text_models", {}))
    terms = models.pop("__terms__", None)
    if terms is not None:
        extras["booster_terms"] = [int(t) for t in terms]
    for name, model in models.items():
        model.save(directory / f"{name}.npz")
    extras["text_models"] = {name: {"file": f"{name}.npz", **describe(m)} for name, m in models.items()}
    (directory / "feature_schema.json").write_text(json.dumps(schema.to_dict(), ensure_ascii=False, indent=1), encoding="utf-8")
    (directory / "model.json").write_text(json.dumps({"boosters": sorted(boosters), **extras}, ensure_ascii=False, indent=1),
                                          encoding="utf-8")
    return extras


# ---------------------------------------------------------------------------------------------- predicting
@dataclass
class Predictor:
    """A loaded model version; scoring workers keep one per process."""

    task: "Task"
    directory: Path
    schema: FeatureSchema
    boosters: dict[str, Any]
    labels: list[str]
    info: dict[str, Any]
    text_models: dict[str, Any]
    terms: dict[int, str] = field(default_factory=dict)  # term id -> n-gram (terms.json), for reasons
    with_reasons: bool = True                             # predict() fills the reasons column (jobs/score sets it)
    _explainers: dict = field(default_factory=dict)  # booster name -> PathExplainer, built on first use
    _columns: list | None = None                      # booster_columns(), built on first use
    _names: Any = None                                # reasons.Names: the names reasons use, built on first use

    @classmethod
    def load(cls, task: "str | Task", directory: Path) -> "Predictor":
        import lightgbm as lgb

        from jobcast import tasks

        from jobcast.models.text_model import TextModel

        info_file, schema_file = directory / "model.json", directory / "feature_schema.json"
        for f in (info_file, schema_file):
            if not f.is_file():
                raise ModelError(f"{directory}: {f.name} missing; expected a model version written by `jobcast train`")
        from jobcast.models.registry import verify_files

        verify_files(directory)
        reading = info_file
        try:  # a damaged version (truncated file, bad JSON) is a ModelError naming the file, not a stack trace
            info = json.loads(info_file.read_text(encoding="utf-8"))
            boosters = {}
            for name in info["boosters"]:
                reading = directory / f"{name}.txt"
                boosters[name] = lgb.Booster(model_file=str(reading))
            reading = schema_file
            schema = FeatureSchema.from_dict(json.loads(schema_file.read_text(encoding="utf-8")))
            text_models = {}
            for name, d in info.get("text_models", {}).items():
                reading = directory / d["file"]
                text_models[name] = TextModel.load(reading)
                text_models[name].tfidf.memo = True  # one TF-IDF per scored batch, for the booster and the reasons
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - LightGBM, JSON, NumPy and KeyError all mean a damaged version
            raise ModelError(f"{reading}: cannot load model version {directory.name} ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:200]}); its files are damaged or incomplete; score with "
                             f"another version (--model-version) or retrain (`jobcast train --task {tasks.get(task).name}`)") from exc
        terms_file = directory / "terms.json"
        terms = ({int(k): v for k, v in json.loads(terms_file.read_text(encoding="utf-8")).items()}
                 if terms_file.is_file() else {})
        return cls(tasks.get(task), directory, schema, boosters, list(info.get("labels", [])), info, text_models, terms)

    def matrix(self, df: pd.DataFrame, counts=None):
        """The booster's input, laid out as this model version recorded it (its stacked columns by name, its
        terms): a version trained by other code is either rebuilt exactly or refused, never fed a wrong shape."""
        counts = self.schema.text_counts(df) if counts is None else counts
        stacked, names = _text_frame(self.text_models, counts)
        wanted = self.info.get("stacked", names)
        missing = [n for n in wanted if n not in names]
        if missing:
            raise ModelError(f"{self.directory}: stacked columns {missing} cannot be rebuilt by this code; retrain")
        X = np.hstack([self.schema.dense(df), stacked[:, [names.index(n) for n in wanted]]])
        if self.info.get("booster_terms"):
            X = _with_terms(X, counts, self.info["booster_terms"])
        expected = self.boosters["model"].num_feature()
        if X.shape[1] != expected:
            raise ModelError(f"{self.directory}: its booster takes {expected} features but this code builds {X.shape[1]} "
                             "from its files (a version written by other training code); retrain")
        return X

    def booster_columns(self) -> list:
        """How to name each input column of the stacked booster in reasons (jobcast.models.reasons); built once
        per loaded version, not per scored batch."""
        if self._columns is not None:
            return self._columns
        from jobcast.models.reasons import Column, dense_columns, term_name

        cols = dense_columns(self.schema)
        for name in self.info.get("stacked", []):
            base, _, j = name.rpartition("_")
            if name in self.text_models:  # a one-output text score
                cols.append(Column("text", text=(self.text_models[name], 0)))
            elif base in self.text_models and j.isdigit():  # one class's (or target's) score of a text model
                cols.append(Column("text", text=(self.text_models[base], int(j))))
            else:  # the category hint's guess and its probabilities
                cols.append(Column("category read from the text"))
        cols += [Column(term_name(self.terms.get(int(t)), int(t))) for t in self.info.get("booster_terms", [])]
        self._columns = cols
        return cols

    @property
    def names(self):
        """The names reasons use (jobcast.models.reasons.Names), kept with the loaded version."""
        if self._names is None:
            from jobcast.models.reasons import Names

            self._names = Names(self.terms)
        return self._names

    def explainer(self, booster: str = "model", num_class: int = 1):
        """The booster's PathExplainer, built once per loaded version."""
        from jobcast.models.reasons import PathExplainer

        e = self._explainers.get(booster)
        if e is None:
            e = self._explainers[booster] = PathExplainer(self.boosters[booster], num_class)
        return e

    def explain(self, X, df: pd.DataFrame, counts, scale: str, klass=None, columns=None, booster: str = "model",
                num_threads: int = 1, leaves=None) -> tuple[np.ndarray, list[str] | None]:
        """(raw score of each row, its reasons JSON): the raw score is the sum of the path attributions, so it
        costs no separate predict (a multiclass booster's leaves may come from the caller, who needed them for
        the probabilities). Without with_reasons: a plain raw predict and None."""
        from jobcast.models.reasons import explain

        b = self.boosters[booster]
        if not self.with_reasons:
            raw = b.predict(X, raw_score=True, num_threads=num_threads)
            if klass is not None:
                raw = raw.reshape(X.shape[0], -1)[np.arange(X.shape[0]), klass]
            return np.asarray(raw, dtype=float), None
        e = self.explainer(booster, max(1, len(self.labels)) if klass is not None else 1)
        contrib, base = e.attributions(e.leaves(X, num_threads) if leaves is None else leaves, klass)
        raw = base + np.asarray(contrib.sum(axis=1)).ravel()
        return raw, explain(contrib, base, raw, columns or self.booster_columns(), df, counts, self.terms, scale, self.names)

    def predict(self, df: pd.DataFrame, num_threads: int = 1) -> pd.DataFrame:
        """The task's prediction rows for the feature rows df (the task declares their columns)."""
        if len(df) == 0:
            return self.task.empty()
        return self.task.predict(self, df, num_threads)


# ---------------------------------------------------------------------------------------------- metrics
def salary_metrics(y: np.ndarray, pred: pd.DataFrame) -> dict[str, float]:
    inside = (y >= pred["salary_p10"].to_numpy()) & (y <= pred["salary_p90"].to_numpy())
    return {"mae": float(np.mean(np.abs(y - pred["salary_p50"].to_numpy()))),
            "coverage_p10_p90": float(inside.mean()),
            "below_p10": float(np.mean(y < pred["salary_p10"].to_numpy())),
            "above_p90": float(np.mean(y > pred["salary_p90"].to_numpy()))}


def category_metrics(y: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import confusion_matrix, f1_score

    y, predicted = np.asarray(y, dtype=object).astype(str), np.asarray(predicted, dtype=object).astype(str)
    present = sorted(set(y) | set(predicted))
    return {"accuracy": float(np.mean(y == predicted)),
            "macro_f1": float(f1_score(y, predicted, labels=present, average="macro", zero_division=0)),
            "confusion_matrix": {"labels": present, "rows_true_cols_pred": confusion_matrix(y, predicted, labels=present).tolist()}}


def cvr_metrics(views: np.ndarray, applies: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Per-view log-loss and AUC (each view is one Bernoulli trial), and a calibration curve by predicted decile."""
    from sklearn.metrics import roc_auc_score

    views = np.asarray(views, dtype=float)
    applies = np.minimum(np.asarray(applies, dtype=float), views)
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    logloss = -float(np.sum(applies * np.log(p) + (views - applies) * np.log(1 - p)) / views.sum())
    y = np.r_[np.ones(len(p)), np.zeros(len(p))]
    w = np.r_[applies, views - applies]
    keep = w > 0
    auc = float(roc_auc_score(y[keep], np.r_[p, p][keep], sample_weight=w[keep])) if 0 < applies.sum() < views.sum() else float("nan")
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(len(edges) - 2, 0))
    curve = []
    for b in range(max(len(edges) - 1, 1)):
        m = which == b
        if views[m].sum() > 0:
            curve.append({"predicted": float(np.average(p[m], weights=views[m])), "observed": float(applies[m].sum() / views[m].sum()),
                          "views": int(views[m].sum())})
    ece = sum(c["views"] * abs(c["predicted"] - c["observed"]) for c in curve) / max(views.sum(), 1)
    return {"logloss": logloss, "auc": auc, "base_rate": float(applies.sum() / views.sum()),
            "calibration_error": float(ece), "calibration_curve": curve}


EVALUATE_ROWS = 25_000  # holdout rows predicted at once


def evaluate(task: "str | Task", predictor: Predictor, holdout: pd.DataFrame) -> dict[str, Any]:
    """The task's holdout metrics of a model (the gate compares champion and challenger with this).

    Predicted without reasons (the metrics read the predictions only) and EVALUATE_ROWS rows at a time, so its
    memory does not grow with the holdout (train.max_holdout_rows). With one pass, reasons included, the
    training driver peaked at 10.4 GiB on the 1M bench board's 176k-row salary holdout (5.4 GiB with 53k
    holdout rows at 300k)."""
    from jobcast import tasks

    with_reasons, predictor.with_reasons = predictor.with_reasons, False
    try:
        parts = [predictor.predict(holdout.iloc[i:i + EVALUATE_ROWS], num_threads=0)
                 for i in range(0, max(len(holdout), 1), EVALUATE_ROWS)]
    finally:
        predictor.with_reasons = with_reasons
    return tasks.get(task).metrics(holdout, pd.concat(parts, ignore_index=True))
