"""Multiple-instance evaluation: a subject's slices are a bag; its probability is their aggregate.

The structural paper averages slice probabilities (``mean``); ``max`` and ``median`` are options, after
which the class probabilities are renormalised to sum to one.
"""

from __future__ import annotations

import pandas as pd

METHODS = ("mean", "max", "median")
KEYS = ["participant_id", "split"]


def probability_columns(frame: pd.DataFrame) -> list[str]:
    columns = [c for c in frame.columns if c.startswith("prob_")]
    if not columns:
        raise ValueError(f"no prob_<class> columns in the predictions; columns are {list(frame.columns)}")
    return columns


def aggregate_subjects(slice_predictions: pd.DataFrame, method: str = "mean") -> pd.DataFrame:
    """One row per subject and split: the aggregated ``prob_<class>`` columns, ``n_slices``,
    ``pred_index`` (argmax) and ``predicted`` (class name), plus every other column that is constant
    within a subject (label, group, class_index, fold, ...)."""
    if method not in METHODS:
        raise ValueError(f"aggregation must be one of {METHODS}, got {method!r}")
    missing = [k for k in KEYS if k not in slice_predictions.columns]
    if missing:
        raise ValueError(f"slice predictions lack the column(s) {missing}")
    probs = probability_columns(slice_predictions)
    grouped = slice_predictions.groupby(KEYS, sort=True)
    out = getattr(grouped[probs], method)()
    if method != "mean":  # max/median of each class need not sum to one
        out = out.div(out.sum(axis=1), axis=0)
    out["n_slices"] = grouped.size()
    others = [c for c in slice_predictions.columns if c not in probs and c not in KEYS]
    if others:
        constant = grouped[others].nunique(dropna=False).le(1).all()
        carried = [c for c in others if constant[c]]
        out = grouped[carried].first().join(out)
    out["pred_index"] = out[probs].to_numpy().argmax(axis=1)
    out["predicted"] = [probs[i][len("prob_"):] for i in out["pred_index"]]
    return out.reset_index()
