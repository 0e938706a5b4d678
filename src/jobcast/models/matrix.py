"""Feature schema and design matrix. Training records the schema; scoring rebuilds the same matrix from it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from jobcast.errors import ModelError
from jobcast.features.transforms import FEATURE_SETS, TEXT


@dataclass(frozen=True)
class FeatureSchema:
    numeric: tuple[str, ...]
    categorical: dict[str, list[str]]  # column -> vocabulary seen in training (code = index)
    text_column: str
    text_buckets: int
    version: int = 1
    names: list[str] = field(default_factory=list)

    @classmethod
    def fit(cls, df: pd.DataFrame, text_buckets: int, task: str) -> "FeatureSchema":
        """The task's feature set (features.transforms.FEATURE_SETS) with the categorical vocabularies of `df`."""
        spec = FEATURE_SETS[task]
        numeric, categorical = tuple(spec["numeric"]), tuple(spec["categorical"])
        vocab = {c: sorted(df[c].dropna().astype(str).unique().tolist()) for c in categorical}
        names = [*numeric, *categorical, *(f"{TEXT}_{i}" for i in range(text_buckets))]
        return cls(numeric=numeric, categorical=vocab, text_column=TEXT, text_buckets=text_buckets, names=names)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FeatureSchema":
        return cls(numeric=tuple(d["numeric"]), categorical=d["categorical"], text_column=d["text_column"],
                   text_buckets=int(d["text_buckets"]), version=int(d.get("version", 1)), names=list(d.get("names", [])))

    @property
    def columns(self) -> list[str]:
        """Input columns the features must provide."""
        return [*self.numeric, *self.categorical, self.text_column]

    @property
    def categorical_indices(self) -> list[int]:
        return list(range(len(self.numeric), len(self.numeric) + len(self.categorical)))

    def check(self, available: list[str], text_buckets: int | None, where: str) -> None:
        """Refuse features that do not fit this model, naming what differs."""
        missing = [c for c in self.columns if c not in available]
        if missing:
            raise ModelError(f"{where}: features lack columns {missing} that the model was trained on; "
                             "expected the model's feature schema (retrain, or rebuild features with the same code)")
        if text_buckets is not None and text_buckets != self.text_buckets:
            raise ModelError(f"{where}: features hash text into {text_buckets} buckets but the model expects "
                             f"{self.text_buckets}; retrain or set features.text_hash_buckets={self.text_buckets}")

    def matrix(self, df: pd.DataFrame):
        """CSR matrix: numeric, categorical codes (unseen or missing -> NaN, LightGBM's 'missing'), text buckets."""
        import scipy.sparse as sp

        n = len(df)
        dense = np.empty((n, len(self.numeric) + len(self.categorical)), dtype=np.float64)
        for j, c in enumerate(self.numeric):
            dense[:, j] = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        for k, (c, vocab) in enumerate(self.categorical.items()):
            codes = pd.Categorical(df[c].astype("string"), categories=vocab).codes.astype(np.float64)
            codes[codes < 0] = np.nan
            dense[:, len(self.numeric) + k] = codes
        text = self.text_matrix(df)
        # Store every dense value explicitly (NaN included) so CSR keeps 'missing' distinct from zero.
        cols = dense.shape[1]
        dense_sp = sp.csr_matrix((dense.ravel(), np.tile(np.arange(cols), n), np.arange(0, n * cols + 1, cols)), shape=dense.shape)
        return sp.hstack([dense_sp, text], format="csr")

    def text_matrix(self, df: pd.DataFrame):
        """Binary CSR of the hashed text buckets."""
        import scipy.sparse as sp

        n = len(df)
        lists = df[self.text_column]
        lengths = np.fromiter((0 if v is None else len(v) for v in lists), dtype=np.int64, count=n)
        indices = np.concatenate([np.asarray(v, dtype=np.int32) for v in lists if v is not None and len(v)] or [np.empty(0, np.int32)])
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        return sp.csr_matrix((np.ones(len(indices), dtype=np.float64), indices, indptr), shape=(n, self.text_buckets))
