"""Classification metrics at the participant level, binary and multi-class.

The unit is the participant: a participant with several images (sessions, or runs with ``runs: all``)
is one row, its images' class probabilities averaged (``per_participant``), so that a subject scanned
three times neither counts three times nor decides three rows of an AUC. Its images stay apart in the
prediction tables, and with one image per participant the two are the same.

The confusion-matrix arithmetic is written out (a few lines, and it defines specificity, which
scikit-learn lacks); AUC comes from scikit-learn. Undefined ratios (no predicted positives, ...) are 0,
as scikit-learn's ``zero_division=0``; an AUC with one class present is NaN.
"""

from __future__ import annotations

import json
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from headmri.evaluation.aggregate import aggregate_subjects
from headmri.splits import SUBJECT

METRIC_COLUMNS = ["accuracy", "precision", "specificity", "sensitivity", "auc", "f1", "balanced_accuracy"]
COUNT_COLUMNS = ["tp", "fp", "tn", "fn"]
# the columns of a fold_metrics row, in order (a fold's metrics.tsv adds source first and the learned check last)
FOLD_COLUMNS = ["task", "model", "fold", "split", "n_subjects", *METRIC_COLUMNS, *COUNT_COLUMNS, "confusion", "per_class"]
# the fold number of a row computed from every fold's test subjects pooled (pooled_test_metrics)
POOLED_FOLD = 0


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


def _auc(y_binary: np.ndarray, score: np.ndarray) -> float:
    if np.unique(y_binary).size < 2:
        return float("nan")
    return float(roc_auc_score(y_binary, score))


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return matrix


def per_class_metrics(y_true: Sequence[int], proba: np.ndarray, pred: Sequence[int], classes: Sequence[str]) -> dict:
    """Each class one-vs-rest: ``{class: {precision, recall, specificity, f1, auc, n}}`` (recall = that class's
    sensitivity; AUC of its probability against the rest, NaN when all or none are of that class; ``n`` its
    subjects). The layout of the per-class rows of a confusion-matrix report such as the fMRI paper's."""
    y, pred = np.asarray(y_true, int), np.asarray(pred, int)
    out = {}
    for c, name in enumerate(classes):
        tp = int(((pred == c) & (y == c)).sum())
        fp = int(((pred == c) & (y != c)).sum())
        fn = int(((pred != c) & (y == c)).sum())
        tn = int(y.size - tp - fp - fn)
        out[str(name)] = {"precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn), "specificity": _ratio(tn, tn + fp),
                          "f1": _ratio(2 * tp, 2 * tp + fp + fn), "auc": _auc((y == c).astype(int), np.asarray(proba)[:, c]),
                          "n": int((y == c).sum())}
    return out


def binary_metrics(y_true: Sequence[int], p_positive: Sequence[float], threshold: float = 0.5) -> dict:
    """Metrics for labels 0 (reference) / 1 (positive), predicting positive when p >= threshold."""
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(p_positive, dtype=float)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(f"y_true and p_positive must be 1-D of one length, got {y.shape} and {p.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("binary y_true must hold only 0 and 1")
    pred = (p >= threshold).astype(int)
    tp = int(((pred == 1) & (y == 1)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    sensitivity, specificity = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    precision = _ratio(tp, tp + fp)
    return {
        "accuracy": _ratio(tp + tn, y.size),
        "precision": precision,
        "specificity": specificity,
        "sensitivity": sensitivity,
        "auc": _auc(y, p),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "balanced_accuracy": (sensitivity + specificity) / 2 if (tp + fn) and (tn + fp) else
        (sensitivity if tp + fn else specificity),
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
        "confusion": [[tn, fp], [fn, tp]],
    }


def multiclass_metrics(y_true: Sequence[int], proba: np.ndarray) -> dict:
    """Macro (unweighted mean over classes) one-vs-rest metrics; balanced accuracy = macro sensitivity
    over the classes present. ``proba`` is (n, K); the prediction is its argmax."""
    y = np.asarray(y_true, dtype=int)
    proba = np.asarray(proba, dtype=float)
    if proba.ndim != 2 or proba.shape[0] != y.size:
        raise ValueError(f"proba must be (n, K) with n = len(y_true), got {proba.shape} for {y.size} labels")
    k = proba.shape[1]
    if y.size and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"y_true must hold class indices 0..{k - 1}")
    matrix = confusion(y, proba.argmax(axis=1), k)
    tp = np.diag(matrix)
    fp = matrix.sum(axis=0) - tp
    fn = matrix.sum(axis=1) - tp
    tn = matrix.sum() - tp - fp - fn
    precision = [_ratio(a, a + b) for a, b in zip(tp, fp)]
    recall = [_ratio(a, a + b) for a, b in zip(tp, fn)]
    specificity = [_ratio(a, a + b) for a, b in zip(tn, fp)]
    f1 = [_ratio(2 * a, 2 * a + b + c) for a, b, c in zip(tp, fp, fn)]
    aucs = [_auc((y == c).astype(int), proba[:, c]) for c in range(k)]
    present = matrix.sum(axis=1) > 0
    return {
        "accuracy": _ratio(tp.sum(), y.size),
        "precision": float(np.mean(precision)),
        "specificity": float(np.mean(specificity)),
        "sensitivity": float(np.mean(recall)),
        "auc": float(np.nanmean(aucs)) if not np.isnan(aucs).all() else float("nan"),
        "f1": float(np.mean(f1)),
        "balanced_accuracy": float(np.mean(np.asarray(recall)[present])) if present.any() else 0.0,
        "tp": int(tp.sum()), "fp": int(fp.sum()), "tn": int(tn.sum()), "fn": int(fn.sum()),
        "confusion": matrix.tolist(),
    }


def per_participant(images: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """One row per participant and split: the mean ``prob_<class>`` of its images and its ``class_index``.
    The participant is the ``subject`` column of an image-level split (headmri.splits.expand_to_images);
    ``images`` without it, or with one image per participant, come back unchanged."""
    if SUBJECT not in images.columns or not images.duplicated([SUBJECT, "split"]).any():
        return images
    grouped = images.groupby([SUBJECT, "split"], sort=True)
    mixed = grouped["class_index"].nunique()
    if (mixed > 1).any():
        raise ValueError(f"participants {sorted(mixed.index[mixed > 1].get_level_values(0))[:5]} have images of "
                         "different classes; a participant has one diagnosis")
    probs = [f"prob_{c}" for c in classes]
    return grouped[probs].mean().join(grouped[["class_index"]].first()).reset_index()


def fold_metrics(subjects: pd.DataFrame, classes: Sequence[str], *, task: str, model: str, fold: int,
                 threshold: float = 0.5) -> pd.DataFrame:
    """One metrics row per split present in ``subjects`` (columns split, class_index, prob_<class>), over
    participants (``per_participant``: ``n_subjects`` counts participants, not images).

    Binary tasks treat ``classes[1]`` as positive; multi-class tasks report macro metrics (tp/fp/tn/fn
    summed one-vs-rest over classes; AUC the macro mean of the one-vs-rest AUCs). ``confusion`` is JSON,
    rows true and columns predicted class; ``per_class`` is JSON, every class one-vs-rest
    (``per_class_metrics``: precision, recall, specificity, F1, AUC, n; the prediction is the one the row's
    metrics use).
    """
    probs = [f"prob_{c}" for c in classes]
    missing = [c for c in probs + ["class_index", "split"] if c not in subjects.columns]
    if missing:
        raise ValueError(f"subject predictions lack the column(s) {missing}")
    rows = []
    for split, part in per_participant(subjects, classes).groupby("split", sort=False):
        y = part["class_index"].to_numpy(int)
        proba = part[probs].to_numpy(float)
        if len(classes) == 2:
            values = binary_metrics(y, proba[:, 1], threshold)
            pred = (proba[:, 1] >= threshold).astype(int)
        else:
            values = multiclass_metrics(y, proba)
            pred = proba.argmax(axis=1)
        values["confusion"] = json.dumps(values["confusion"])
        values["per_class"] = json.dumps(per_class_metrics(y, proba, pred, classes), allow_nan=True)
        rows.append({"task": task, "model": model, "fold": int(fold), "split": split,
                     "n_subjects": int(len(part)), **values})
    order = {"test": 0, "val": 1, "train": 2}
    table = pd.DataFrame(rows, columns=FOLD_COLUMNS)
    return table.sort_values("split", key=lambda s: s.map(order).fillna(9), ignore_index=True)


def pooled_test_metrics(predictions: pd.DataFrame, classes: Sequence[str], *, task: str, model: str,
                        threshold: float = 0.5) -> pd.DataFrame:
    """One ``fold_metrics`` row (fold ``POOLED_FOLD``, split ``test``) from the test subjects of every fold
    pooled: the score of leave-one-subject-out, whose one-subject folds have no AUC, precision or F1 of
    their own, and a finer one than the mean of 0-or-1 fold AUCs where folds test one subject per class.
    ``predictions``: subject predictions of all folds (``split``, ``class_index``, ``prob_<class>``). A subject
    tested in two folds is an error (test sets must be disjoint across folds, as every split scheme makes them)."""
    test = predictions[predictions["split"] == "test"]
    if test.empty:
        raise ValueError("no test subjects to pool")
    key = SUBJECT if SUBJECT in test.columns else "participant_id"  # the participant (all its sessions)
    if "fold" in test.columns:
        folds = test.groupby(key)["fold"].nunique()
        twice = sorted(folds.index[folds > 1])
    else:
        twice = sorted(set(test[key][test[key].duplicated()]))
    if twice:
        raise ValueError(f"subjects {twice[:5]} are tested in several folds; pooling needs test sets that are "
                         "disjoint across folds")
    return fold_metrics(test, classes, task=task, model=model, fold=POOLED_FOLD, threshold=threshold)


def evaluate_fold(slice_predictions: pd.DataFrame, classes: Sequence[str], *, task: str, model: str, fold: int,
                  method: str = "mean", threshold: float = 0.5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Slice predictions of one fold -> (subject predictions, metrics rows per split)."""
    subjects = aggregate_subjects(slice_predictions, method)
    return subjects, fold_metrics(subjects, classes, task=task, model=model, fold=fold, threshold=threshold)
