"""A task's figures from its files: ranking bars, the mean map over folds, top regions on the atlas,
ROC curves per fold and confusion matrices summed over folds (held-out test subjects only).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import nibabel as nib
import numpy as np
import pandas as pd

from headmri.atomic import save_nifti
from headmri.errors import InputError
from headmri.evaluation.learned import read_fold_learned
from headmri.explain import figures
from headmri.explain.merge import folds_to_merge

log = logging.getLogger(__name__)


def sanity_line(summaries: Sequence[str | Path] | None) -> str | None:
    """One line on the folds' model-parameter randomisation tests (from their explain.json), or None when
    no fold has one: the median Spearman correlation of each fold and how many passed."""
    import json

    records = []
    for path in summaries or ():
        try:
            record = json.loads(Path(path).read_text()).get("sanity")
        except (OSError, ValueError) as error:
            raise InputError(f"cannot read the explanation summary: {error}", path=path) from error
        if record:
            records.append(record)
    if not records:
        return None
    rhos = ", ".join("n/a" if r.get("spearman") is None else f"{r['spearman']:.2f}" for r in records)
    passed = sum(1 for r in records if r.get("passed") is True)
    return (f"randomisation test (last blocks re-initialised): Spearman {rhos} per fold; "
            f"passed (< {records[0].get('threshold', 0.5):g}) in {passed} of {len(records)}")


def mean_over_folds(paths: Sequence[str | Path]) -> nib.Nifti1Image:
    """The mean of the folds' mean maps (every fold weighs the same, as in the ranking)."""
    if not paths:
        raise InputError("no fold mean maps to average")
    first = nib.load(str(paths[0]))
    total = np.zeros(first.shape, np.float64)
    for path in paths:
        image = nib.load(str(path))
        if image.shape != first.shape or not np.allclose(image.affine, first.affine, atol=1e-3):
            raise InputError(f"the fold mean maps are on different grids ({image.shape} vs {first.shape})", path=path)
        total += np.asarray(image.dataobj, dtype=np.float64)
    return nib.Nifti1Image((total / len(paths)).astype(np.float32), first.affine)


def held_out_predictions(paths: Mapping[int, str | Path]) -> pd.DataFrame:
    """Every fold's test-split subject predictions, with a ``fold`` column."""
    frames = []
    for fold, path in sorted(paths.items()):
        try:
            frame = pd.read_csv(path, sep="\t", dtype={"participant_id": str})
        except (OSError, pd.errors.ParserError) as error:
            raise InputError(f"cannot read the subject predictions: {error}", path=path) from error
        missing = [c for c in ("participant_id", "split", "class_index") if c not in frame.columns]
        if missing:
            raise InputError(f"the subject predictions lack columns {missing}", path=path)
        frames.append(frame[frame["split"] == "test"].assign(fold=int(fold)))
    return pd.concat(frames, ignore_index=True)


def true_classes(predictions: pd.DataFrame, classes: Sequence[str]) -> pd.Series:
    """Each subject's true class name, from its class index in the task."""
    return pd.Series([classes[int(i)] for i in predictions["class_index"]], index=predictions.index)


def _roc(name: str, truth: np.ndarray, scores: pd.Series) -> tuple[str, np.ndarray, np.ndarray, float]:
    from sklearn.metrics import roc_auc_score, roc_curve

    if truth.all() or not truth.any():  # one class only: no curve can be drawn
        return name, np.array([0.0, 1.0]), np.array([0.0, 1.0]), float("nan")
    fpr, tpr, _ = roc_curve(truth, scores)
    return name, fpr, tpr, float(roc_auc_score(truth, scores))


def roc_curves(predictions: pd.DataFrame, classes: Sequence[str]) -> list[tuple[str, np.ndarray, np.ndarray, float]]:
    """One curve per fold (and per disease class, one-vs-rest, for multi-class tasks) that has a curve of its own,
    and with more than one fold a curve of the folds' test subjects pooled (the metrics table's pooled row):
    the only curve with leave-one-subject-out, and the one with more than two points when folds test one
    subject per class."""
    predictions = predictions.assign(true_class=true_classes(predictions, classes))
    curves = []
    for disease in classes[1:]:
        column = f"prob_{disease}"
        if column not in predictions.columns:
            raise InputError(f"the subject predictions have no {column} column")
        suffix = f", {disease}" if len(classes) > 2 else ""
        per_fold = [_roc(f"fold {fold}{suffix}", (rows["true_class"] == disease).to_numpy(), rows[column])
                    for fold, rows in predictions.groupby("fold")]
        own = [curve for curve in per_fold if not np.isnan(curve[-1])]
        if len(per_fold) > 1:
            own.append(_roc(f"{len(per_fold)} folds pooled{suffix}", (predictions["true_class"] == disease).to_numpy(),
                            predictions[column]))
        curves += own or per_fold
    return curves


def confusion_counts(predictions: pd.DataFrame, classes: Sequence[str]) -> np.ndarray:
    """Counts of (true class, predicted class) over every fold's test subjects."""
    from sklearn.metrics import confusion_matrix

    if "predicted" in predictions.columns:
        predicted = predictions["predicted"]
    else:
        predicted = predictions[[f"prob_{c}" for c in classes]].to_numpy().argmax(axis=1)
        predicted = pd.Series([classes[i] for i in predicted])
    return confusion_matrix(true_classes(predictions, classes), predicted, labels=list(classes))


@dataclass(frozen=True)
class FigureInputs:
    """What one task's figures are drawn from; the per-fold files are keyed by fold. ``metrics``: each
    fold's training metrics.tsv, whose ``learned`` flag decides which folds the mean map, the ROC curves
    and the confusion matrix are over (the ranking's own rule, ``merge.folds_to_merge``); ``summaries``: the
    folds' explain.json, whose randomisation tests the ranking figure's title reports."""

    ranking_tsv: str | Path
    fold_mean_maps: Mapping[int, str | Path]
    atlas_dseg: str | Path
    predictions: Mapping[int, str | Path]
    template: str | Path
    brain_mask: str | Path | None = None
    summaries: Mapping[int, str | Path] | None = None
    metrics: Mapping[int, str | Path] | None = None


@dataclass(frozen=True)
class FigureOutputs:
    bars: str | Path
    mean_nifti: str | Path
    mean_png: str | Path
    top_regions: str | Path
    roc: str | Path
    confusion: str | Path


def figure_folds(inputs: FigureInputs, exclude_unlearned: bool = True) -> list[int]:
    """The folds the figures are over: those that learned, unless none did or ``exclude_unlearned`` is off."""
    learned = {fold: read_fold_learned(path) for fold, path in (inputs.metrics or {}).items()}
    folds, _ = folds_to_merge(inputs.fold_mean_maps, learned, exclude_unlearned)
    return folds


def task_figures(task: str, classes: Sequence[str], inputs: FigureInputs, outputs: FigureOutputs, *, top_k: int,
                 method: str, exclude_unlearned: bool = True) -> None:
    """Write every per-task figure (and the mean map NIfTI) for the main model of ``task``, over the folds
    that learned (``figure_folds``)."""
    folds = figure_folds(inputs, exclude_unlearned)
    ranking = pd.read_csv(inputs.ranking_tsv, sep="\t")
    sanity = sanity_line([inputs.summaries[f] for f in folds] if inputs.summaries else None)
    figures.ranking_bars(ranking, outputs.bars, title=f"task {task}: regions ranked by {method} ({len(folds)} folds)"
                         + (f"\n{sanity}" if sanity else ""), top_n=max(20, top_k), top_k=top_k)
    mean = mean_over_folds([inputs.fold_mean_maps[f] for f in folds])
    save_nifti(mean, outputs.mean_nifti)
    figures.mean_map_figure(mean, inputs.template, outputs.mean_png, title=f"task {task}: mean {method} map (patients, then folds)",
                            brain_mask=nib.load(str(inputs.brain_mask)) if inputs.brain_mask is not None else None)
    figures.top_regions_figure(ranking, nib.as_closest_canonical(nib.load(str(inputs.atlas_dseg))), inputs.template,
                               outputs.top_regions, top_k=top_k, title=f"task {task}: top {top_k} regions")
    tested = held_out_predictions({f: inputs.predictions[f] for f in folds})
    pooled = " and the folds pooled" if tested["fold"].nunique() > 1 else ""
    figures.roc_figure(roc_curves(tested, classes), outputs.roc, title=f"task {task}: test subjects, one curve per fold{pooled}")
    figures.confusion_figure(confusion_counts(tested, classes), classes, outputs.confusion,
                             title=f"task {task}: test subjects, summed over {tested['fold'].nunique()} folds")
    log.info("task %s: figures written over fold(s) %s", task, folds)
