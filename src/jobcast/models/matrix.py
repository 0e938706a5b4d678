"""Feature schema and design matrix. Training records the schema; scoring rebuilds the same matrix from it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from jobcast.errors import ModelError
from jobcast.features.text import TERMS


@dataclass(frozen=True)
class FeatureSchema:
    numeric: tuple[str, ...]
    categorical: dict[str, list[str]]  # column -> vocabulary seen in training (code = index)
    text_column: str
    text_spec: dict[str, Any]          # features.text params the features were built with (hash_bits, n-grams)
    version: int = 2
    names: list[str] = field(default_factory=list)

    @classmethod
    def fit(cls, df: pd.DataFrame, text_spec: dict[str, Any], task) -> "FeatureSchema":
        """The task's declared features (jobcast.tasks) with the categorical vocabularies of `df`."""
        from jobcast import tasks

        declared = tasks.get(task)
        numeric, categorical = tuple(declared.numeric), tuple(declared.categorical)
        vocab = {c: sorted(df[c].dropna().astype(str).unique().tolist()) for c in categorical}
        return cls(numeric=numeric, categorical=vocab, text_column=TERMS, text_spec=dict(text_spec),
                   names=[*numeric, *categorical])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FeatureSchema":
        if "text_spec" not in d:
            raise ModelError("feature schema without text_spec: written by an older jobcast (hashed 1-3-grams); retrain")
        return cls(numeric=tuple(d["numeric"]), categorical=d["categorical"], text_column=d["text_column"],
                   text_spec=dict(d["text_spec"]), version=int(d.get("version", 2)), names=list(d.get("names", [])))

    @property
    def columns(self) -> list[str]:
        """Input columns the features must provide."""
        return [*self.numeric, *self.categorical, self.text_column]

    @property
    def categorical_indices(self) -> list[int]:
        return list(range(len(self.numeric), len(self.numeric) + len(self.categorical)))

    @property
    def num_text_features(self) -> int:
        return 1 << int(self.text_spec["hash_bits"])

    def check(self, available: list[str], text_spec: dict[str, Any] | None, where: str) -> None:
        """Refuse features that do not fit this model, naming what differs."""
        missing = [c for c in self.columns if c not in available]
        if missing:
            raise ModelError(f"{where}: features lack columns {missing} that the model was trained on; "
                             "expected the model's feature schema (retrain, or rebuild features with the same code)")
        if text_spec is not None and dict(text_spec) != self.text_spec:
            hint = ""
            if text_spec.get("word_clusters") != self.text_spec.get("word_clusters"):
                hint = (f" (features.text.word_clusters: {str(bool(self.text_spec.get('word_clusters'))).lower()}"
                        " for this model's word clusters)")
            raise ModelError(f"{where}: features hash text with {text_spec} but the model expects {self.text_spec}; "
                             f"retrain, or rebuild the features with features.text set to {self.text_spec}{hint}")

    def dense(self, df: pd.DataFrame) -> np.ndarray:
        """Numeric columns, then categorical codes (unseen or missing -> NaN, LightGBM's 'missing')."""
        n = len(df)
        out = np.empty((n, len(self.numeric) + len(self.categorical)), dtype=np.float64)
        for j, c in enumerate(self.numeric):
            out[:, j] = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        for k, (c, vocab) in enumerate(self.categorical.items()):
            codes = pd.Categorical(df[c].astype("string"), categories=vocab).codes.astype(np.float64)
            codes[codes < 0] = np.nan
            out[:, len(self.numeric) + k] = codes
        return out

    def text_counts(self, df: pd.DataFrame):
        """CSR of the hashed text term counts."""
        from jobcast.models.text_model import terms_matrix

        return terms_matrix(df[self.text_column].to_numpy(), self.num_text_features)
