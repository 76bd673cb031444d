"""Multiple-instance evaluation: a subject's slices are a bag; its probability is their aggregate.

The structural paper averages slice probabilities (``mean``); ``max`` and ``median`` are options, after
which the class probabilities are renormalised to sum to one. ``top`` (two classes): the mean of the top
``TOP_FRACTION`` of a subject's slice log-odds, through the logistic function: the bag score that
``training.objective: mil`` trains (headmri.training.mil), so a subject is scored as its model was trained.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

METHODS = ("mean", "max", "median", "top")
TOP_FRACTION = 0.5  # of a subject's slices, for ``top`` and the multiple-instance bag score (0.25 lost a smaller
# structure beside a larger one from the explanations; docs/training.md, "Multiple-instance training")
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
    if method == "top":
        out = _top_log_odds(slice_predictions, probs)
    else:
        out = getattr(grouped[probs], method)()
    if method in ("max", "median"):  # max/median of each class need not sum to one
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


def top_count(n_slices: int) -> int:
    """How many of ``n_slices`` the ``top`` score averages: ``TOP_FRACTION`` of them, at least one."""
    return max(1, int(round(TOP_FRACTION * n_slices)))


def _top_log_odds(slice_predictions: pd.DataFrame, probs: list[str]) -> pd.DataFrame:
    """Per subject: the logistic of the mean of its top ``TOP_FRACTION`` slice log-odds of the second class
    against the first (the columns in the task's class order, reference class first, as the job writes them)."""
    if len(probs) != 2:
        raise ValueError(f"aggregation top takes two classes, got {probs}")
    clipped = slice_predictions[probs].clip(1e-7, 1.0)
    frame = slice_predictions[KEYS].assign(log_odds=np.log(clipped[probs[1]]) - np.log(clipped[probs[0]]))
    top = frame.groupby(KEYS, sort=True)["log_odds"].apply(lambda s: s.nlargest(top_count(s.size)).mean())
    positive = 1.0 / (1.0 + np.exp(-top))
    return pd.DataFrame({probs[0]: 1.0 - positive, probs[1]: positive})
