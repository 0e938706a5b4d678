"""Salary model: LightGBM on log salary with an L1 objective, so exp(prediction) estimates the median."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from jobcast.errors import ModelError
from jobcast.models.matrix import FeatureSchema

OUTPUT_COLUMNS = ("job_id", "salary_p50")
LGB_KEYS = ("objective", "learning_rate", "num_leaves", "min_data_in_leaf", "feature_fraction", "seed")


def train(train_df: pd.DataFrame, schema: FeatureSchema, params: dict[str, Any]):
    import lightgbm as lgb

    lgb_params = {k: params[k] for k in LGB_KEYS if k in params}
    lgb_params.update(verbosity=-1, num_threads=0, deterministic=True, force_row_wise=True)
    # Early stopping on a time-ordered tail of the training part; the holdout stays untouched for metrics.
    ordered = train_df.sort_values("posted_at", kind="stable")
    cut = int(len(ordered) * 0.9)
    fit, stop = ordered.iloc[:cut], ordered.iloc[cut:]
    dtrain = lgb.Dataset(schema.matrix(fit), label=np.log(fit["salary_label"].to_numpy()),
                         categorical_feature=schema.categorical_indices, free_raw_data=False)
    dvalid = lgb.Dataset(schema.matrix(stop), label=np.log(stop["salary_label"].to_numpy()), reference=dtrain)
    booster = lgb.train(
        lgb_params, dtrain, num_boost_round=int(params.get("num_boost_round", 500)), valid_sets=[dvalid],
        callbacks=[lgb.early_stopping(int(params.get("early_stopping_rounds", 50)), verbose=False)],
    )
    return booster


def save(booster, schema: FeatureSchema, directory: Path) -> None:
    booster.save_model(str(directory / "model.txt"), num_iteration=booster.best_iteration or None)
    (directory / "feature_schema.json").write_text(json.dumps(schema.to_dict(), ensure_ascii=False, indent=1), encoding="utf-8")


class Predictor:
    """A loaded model version; scoring workers keep one per process."""

    def __init__(self, directory: Path):
        import lightgbm as lgb

        model_file = directory / "model.txt"
        if not model_file.is_file():
            raise ModelError(f"{directory}: model.txt missing; expected a model version written by `jobcast train`")
        self.directory = directory
        self.booster = lgb.Booster(model_file=str(model_file))
        self.schema = FeatureSchema.from_dict(json.loads((directory / "feature_schema.json").read_text(encoding="utf-8")))

    def predict(self, df: pd.DataFrame, num_threads: int = 1) -> pd.DataFrame:
        if len(df) == 0:
            return pd.DataFrame({"job_id": pd.Series([], dtype="int64"), "salary_p50": pd.Series([], dtype="float64")})
        raw = self.booster.predict(self.schema.matrix(df), num_threads=num_threads)
        return pd.DataFrame({"job_id": df["job_id"].astype("int64").to_numpy(), "salary_p50": np.exp(raw)})


def mae(y_true, y_pred) -> float:
    return float(np.mean(np.abs(np.asarray(y_true, dtype=float) - np.asarray(y_pred, dtype=float))))
