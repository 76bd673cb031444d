"""Prediction tables: one row per scored slice (or volume), and the subject-level loss used for selection."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from headmri.evaluation.metrics import per_participant
from headmri.splits import SUBJECT
from headmri.training.loop import Predictions


def slice_predictions(predictions: Predictions, rows: pd.DataFrame, classes: Sequence[str], *,
                      kept_indices: Mapping[str, Sequence[int]] | None = None) -> pd.DataFrame:
    """One row per scored item: the subject's split row, its slice position (index into its slice
    array; 0 for a whole volume), the source slice index when known, and ``prob_<class>``."""
    subjects = rows.reset_index(drop=True).iloc[predictions.subject_index]
    frame = pd.DataFrame({
        "participant_id": subjects["participant_id"].to_numpy(),
        "split": subjects["split"].to_numpy(),
        "label": subjects["label"].to_numpy(),
        "group": subjects["group"].to_numpy(),
        "class_index": subjects["class_index"].astype(int).to_numpy(),
        "slice_position": predictions.slice_position.astype(int),
    })
    if SUBJECT in subjects.columns:  # the participant of each image: metrics count participants
        frame.insert(1, SUBJECT, subjects[SUBJECT].to_numpy())
    if kept_indices is not None:
        frame["slice_index"] = [int(kept_indices[pid][k]) for pid, k in zip(frame["participant_id"], frame["slice_position"])]
    for c, name in enumerate(classes):
        frame[f"prob_{name}"] = predictions.probabilities[:, c]
    return frame.sort_values(["participant_id", "slice_position"], ignore_index=True)


def subject_loss(subjects: pd.DataFrame, classes: Sequence[str]) -> float:
    """Mean cross-entropy of the aggregated subject probabilities (the quantity the paper's
    multiple-instance evaluation scores), over participants: a participant's images (sessions, runs) are
    averaged first (``per_participant``), as in every metric, so that one with many sessions does not
    weigh more in checkpoint selection."""
    subjects = per_participant(subjects, classes)
    probs = subjects[[f"prob_{c}" for c in classes]].to_numpy(float)
    probs = probs / probs.sum(axis=1, keepdims=True)
    true = probs[np.arange(len(probs)), subjects["class_index"].astype(int).to_numpy()]
    return float(-np.log(np.clip(true, 1e-7, 1.0)).mean())
