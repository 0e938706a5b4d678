"""The profile of a model's training features, and the check of a day's features against it.

A model learns what its inputs looked like. When a board changes under it (a column left empty, a new
vocabulary, a unit change), every prediction gate can stay green while the predictions quietly degrade: the
case seen on real wage data, where the filed category was on every training row and missing on the rows to
predict. So each model records, per input column, its null rate, and the shares of its most common values
(categorical) or its quantiles (numeric); the features gate compares the day's features with the profile of
every champion and names the column and both numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

TOP_VALUES = 50
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def profile(df: pd.DataFrame, numeric: list[str], categorical: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"rows": int(len(df)), "columns": {}}
    for c in numeric:
        v = pd.to_numeric(df[c], errors="coerce")
        q = v.dropna().quantile(list(QUANTILES)).tolist() if v.notna().any() else []
        out["columns"][c] = {"kind": "numeric", "null_rate": float(v.isna().mean()), "quantiles": dict(zip(map(str, QUANTILES), q))}
    for c in categorical:
        v = df[c].astype("string")
        shares = v.dropna().value_counts(normalize=True).head(TOP_VALUES)
        out["columns"][c] = {"kind": "categorical", "null_rate": float(v.isna().mean()),
                             "shares": {str(k): round(float(s), 6) for k, s in shares.items()}}
    return out


def shifts(reference: dict[str, Any], df: pd.DataFrame, thresholds: dict[str, float]) -> list[dict[str, Any]]:
    """Columns whose distribution today moved beyond the thresholds, each with the numbers that say so.

    - null rate: today's minus training's > max_null_rate_increase (absolute);
    - categorical: total variation distance between the value shares (over the training's top values, the
      rest pooled as 'other') > max_share_shift;
    - numeric: today's median outside the training's [q05, q95]."""
    found = []
    for col, ref in reference.get("columns", {}).items():
        if col not in df.columns:
            found.append({"column": col, "check": "missing", "message": f"{col} is missing today (the model was trained with it)"})
            continue
        null_today = float(df[col].isna().mean()) if len(df) else 0.0
        if null_today - ref["null_rate"] > thresholds["max_null_rate_increase"]:
            found.append({"column": col, "check": "null_rate", "training": ref["null_rate"], "today": null_today,
                          "message": f"{col} null rate {ref['null_rate']:.2f} in training vs {null_today:.2f} today "
                                     f"(allowed increase {thresholds['max_null_rate_increase']:.2f})"})
        if ref["kind"] == "categorical" and ref["shares"]:
            today = df[col].dropna().astype(str).value_counts(normalize=True)
            keys = list(ref["shares"])
            p = np.array([ref["shares"][k] for k in keys] + [max(0.0, 1 - sum(ref["shares"].values()))])
            q = np.array([float(today.get(k, 0.0)) for k in keys] + [float(today[~today.index.isin(keys)].sum())])
            tv = 0.5 * float(np.abs(p - q).sum()) if len(today) else 0.0
            if tv > thresholds["max_share_shift"]:
                worst = keys[int(np.argmax(np.abs(p - q)[:-1]))] if len(keys) else "other"
                found.append({"column": col, "check": "shares", "distance": tv,
                              "message": f"{col} value shares moved by {tv:.2f} (total variation; allowed "
                                         f"{thresholds['max_share_shift']:.2f}), e.g. {worst!r} "
                                         f"{ref['shares'].get(worst, 0):.2f} in training vs {float(today.get(worst, 0)):.2f} today"})
        elif ref["kind"] == "numeric" and ref["quantiles"]:
            v = pd.to_numeric(df[col], errors="coerce").dropna()
            if len(v):
                med, lo, hi = float(v.median()), ref["quantiles"]["0.05"], ref["quantiles"]["0.95"]
                if not lo <= med <= hi:
                    found.append({"column": col, "check": "median", "training_q05": lo, "training_q95": hi, "today": med,
                                  "message": f"{col} median {med:.4g} today is outside the training's 5-95% range "
                                             f"[{lo:.4g}, {hi:.4g}]"})
    return found
