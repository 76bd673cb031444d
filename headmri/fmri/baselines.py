"""SVM and random forest on the RFCS vectors, on subject-level folds, in the structural metrics' columns.

Each fold fits a scikit-learn pipeline (standard scaling, then the classifier) on the fold's training
subjects only and predicts class probabilities for every subject of the fold; the metrics come from
headmri.evaluation.metrics.fold_metrics, the same function the CNN folds use, plus ``source`` and
``validation`` columns. Hyperparameters are fixed (a linear SVM with C = 1, see ``BaselineSettings``;
500 trees): nothing is chosen on held-out subjects. SVM probabilities are Platt scaling fitted on internal
folds of the training subjects (CalibratedClassifierCV, what scikit-learn 1.9 puts in place of
``SVC(probability=True)``).

A participant with several images (sessions) is one unit of the fit, as it is of the split: the internal
calibration folds keep each participant's images on one side (``calibration_cv``), and each training image
weighs 1 / (its participant's training images) in the scaler, the SVM with its calibration, and the random
forest (``participant_weights``), so every participant counts once. With one image per participant both
are what they were before (scikit-learn's StratifiedKFold, no weights), so those results do not change.

Permutation importance (as scikit-learn's ``permutation_importance`` defines it, computed in one batch) is measured per fold on the fold's test
subjects, scored by the log-likelihood of their true classes: how much worse the model predicts held-out
subjects when one region's RFCS is shuffled among them. A fold with fewer than two test subjects (every
leave-one-subject-out fold) has nothing to shuffle and is left out of the importance table.

A row of a split is an image (``participant_id`` ``sub-01_ses-2``, its participant in the ``subject``
column when a participant has several): each image's RFCS vector is a sample, with the set its participant
has in the fold, so no participant's session trains while another is tested.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from headmri.errors import InputError
from headmri.evaluation.metrics import fold_metrics
from headmri.evaluation.metrics import pooled_test_metrics as pooled_rows
from headmri.splits import SUBJECT

MODELS = ("svm", "random_forest")


@dataclass(frozen=True)
class BaselineSettings:
    seed: int = 0
    svm_c: float = 1.0
    # linear: 116 RFCS features and tens of subjects; with an RBF kernel the distances are dominated by
    # the uninformative regions (synthetic cohort, 20 subjects, 5 folds: AUC 0.55 RBF, 0.94 linear)
    svm_kernel: str = "linear"
    calibration_folds: int = 3
    trees: int = 500
    fit_splits: tuple[str, ...] = ("train",)
    importance_repeats: int = 30


@dataclass(frozen=True)
class Task:
    """What the rows are labelled with: task name, classes (class_index order), source, validation."""

    name: str
    classes: tuple[str, ...]
    source: str = "rfcs"
    validation: str = "split"


@dataclass(frozen=True)
class BaselineResult:
    predictions: pd.DataFrame  # participant_id (the image), fold, split, class_index, [subject], prob_<class>
    metrics: pd.DataFrame  # fold_metrics rows plus source and validation
    importance: pd.DataFrame  # fold, feature, importance_mean, importance_std, n_subjects


CalibrationCV = int | list[tuple[np.ndarray, np.ndarray]]


def make_model(name: str, settings: BaselineSettings, calibration: CalibrationCV | None = None) -> Pipeline:
    """The unfitted pipeline; ``calibration`` is the SVM's internal CV (``calibration_cv``; default
    ``settings.calibration_folds`` stratified folds)."""
    if name == "svm":
        # scikit-learn 1.9 replaces SVC(probability=True) by this (Platt scaling on internal folds of the
        # training subjects, one SVC refitted on all of them)
        cv = settings.calibration_folds if calibration is None else calibration
        svm = CalibratedClassifierCV(SVC(C=settings.svm_c, kernel=settings.svm_kernel), method="sigmoid",
                                     ensemble=False, cv=cv)
        return make_pipeline(StandardScaler(), svm)
    if name == "random_forest":
        return make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=settings.trees, random_state=settings.seed))
    raise ValueError(f"model must be one of {MODELS}, got {name!r}")


def feature_table(vectors: dict[str, np.ndarray], names: Sequence[str]) -> pd.DataFrame:
    """One row per subject (index participant_id), one column per region."""
    table = pd.DataFrame.from_dict({s: np.asarray(v, float) for s, v in vectors.items()}, orient="index", columns=list(names))
    table.index.name = "participant_id"
    return table


def _features_of(features: pd.DataFrame, ids: Sequence[str]) -> np.ndarray:
    missing = [s for s in ids if s not in features.index]
    if missing:
        raise InputError(f"no RFCS vector for the subject(s) {missing[:10]}")
    values = features.loc[list(ids)].to_numpy(float)
    if not np.isfinite(values).all():
        raise InputError("the RFCS vectors hold NaN or infinite values")
    return values


def _log_likelihood(proba: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean log-probability of the true classes per batch (``proba``: batches x subjects x classes), as
    scikit-learn's ``log_loss`` clips it (its negative)."""
    eps = np.finfo(proba.dtype).eps
    true = np.take_along_axis(proba, y[None, :, None], axis=2)[..., 0]
    return np.log(np.clip(true, eps, 1 - eps)).mean(axis=1)


def participants_of(rows: pd.DataFrame) -> pd.Series:
    """Each row's participant: the ``subject`` column of an image-level split, else the row itself."""
    return rows[SUBJECT if SUBJECT in rows.columns else "participant_id"].astype(str)


def participant_weights(train: pd.DataFrame) -> np.ndarray | None:
    """1 / (the participant's training images) per training row, so a participant with three sessions
    weighs as much as one with one (its sessions are not independent subjects). None when every
    participant has one image: scikit-learn 1.9's forest draws its bootstrap differently once given
    weights, even all-one weights, and the fits must stay what they were."""
    participants = participants_of(train)
    counts = participants.map(participants.value_counts()).to_numpy(float)
    return None if (counts == 1).all() else 1.0 / counts


def calibration_cv(train: pd.DataFrame, folds: int) -> CalibrationCV:
    """The SVM's internal calibration folds over the training rows. Stratified folds on images
    (CalibratedClassifierCV's own ``cv=folds``) would put one participant's sessions on both sides of a
    split, the Platt scaling then fitted on scores of a participant the SVM trained on: with several
    images per participant the folds are StratifiedGroupKFold's by participant (``folds`` at most the
    participants of the smallest class, see ``_fit_fold``). With one image each: ``folds``, as before."""
    participants, y = participants_of(train).to_numpy(), train["class_index"].to_numpy()
    if len(set(participants)) == len(participants):
        return folds
    splits = list(StratifiedGroupKFold(n_splits=folds).split(np.zeros(len(y)), y, participants))
    for fit, _ in splits:
        if len(set(y[fit])) < len(set(y)):
            raise InputError(f"a calibration fold trains on classes {sorted(set(y[fit]))} of {sorted(set(y))}: "
                             "too few participants per class for grouped Platt scaling")
    return splits


def _fit_params(pipeline: Pipeline, weights: np.ndarray | None) -> dict[str, np.ndarray]:
    """``sample_weight`` for every step of the pipeline (scaler and classifier), or nothing."""
    return {} if weights is None else {f"{name}__sample_weight": weights for name, _ in pipeline.steps}


def _fit_fold(features: pd.DataFrame, rows: pd.DataFrame, task: Task, model: str, settings: BaselineSettings):
    """(fitted pipeline, image predictions of the fold)."""
    train = rows[rows["split"].isin(settings.fit_splits)]
    present = set(train["class_index"])
    if present != set(range(len(task.classes))):
        raise InputError(f"fold {int(rows['fold'].iloc[0])} trains on classes {sorted(present)} only; every class "
                         f"of {list(task.classes)} needs training subjects")
    # participants, not images, per class: a calibration fold holds whole participants
    smallest = int(participants_of(train).groupby(train["class_index"]).nunique().min())
    calibration = None
    if model == "svm":
        if smallest < 2:
            raise InputError(f"fold {int(rows['fold'].iloc[0])} has one training participant in a class: the SVM's "
                             "probability calibration needs two or more per class")
        calibration = calibration_cv(train, min(smallest, settings.calibration_folds))  # fewer folds if need be
    pipeline = make_model(model, settings, calibration)
    pipeline.fit(_features_of(features, train["participant_id"]), train["class_index"],
                 **_fit_params(pipeline, participant_weights(train)))
    proba = pipeline.predict_proba(_features_of(features, rows["participant_id"]))
    kept = ["participant_id", "fold", "split", "class_index"] + ([SUBJECT] if SUBJECT in rows.columns else [])
    out = rows[kept].reset_index(drop=True)  # with a participant's images, its participant (pooling checks it)
    for k, cls in enumerate(task.classes):
        out[f"prob_{cls}"] = proba[:, list(pipeline.classes_).index(k)]
    return pipeline, out


def _importance(pipeline: Pipeline, features: pd.DataFrame, test: pd.DataFrame, settings: BaselineSettings) -> pd.DataFrame:
    """Permutation importance as scikit-learn defines it (the drop in the test subjects' log-likelihood
    when one feature is shuffled among them, over ``importance_repeats`` shuffles), with every shuffled copy
    predicted in one call: one predict_proba per copy cost 40 ms each, 30 minutes for the demo's runs."""
    x = _features_of(features, test["participant_id"])
    y = np.searchsorted(pipeline.classes_, test["class_index"].to_numpy())
    repeats, (n, width) = settings.importance_repeats, x.shape
    rng = np.random.default_rng(settings.seed)
    copies = np.repeat(x[None], width * repeats, axis=0)  # (feature, repeat) x subjects x features
    for k in range(width):
        for r in range(repeats):
            copies[k * repeats + r, :, k] = x[rng.permutation(n), k]
    base = _log_likelihood(pipeline.predict_proba(x)[None], y)[0]
    shuffled = _log_likelihood(pipeline.predict_proba(copies.reshape(-1, width)).reshape(len(copies), n, -1), y)
    drops = (base - shuffled).reshape(width, repeats)
    return pd.DataFrame({"feature": list(features.columns), "importance_mean": drops.mean(axis=1),
                         "importance_std": drops.std(axis=1), "n_subjects": len(test)})


def evaluate_baseline(features: pd.DataFrame, split: pd.DataFrame, task: Task, model: str,
                      settings: BaselineSettings = BaselineSettings()) -> BaselineResult:
    """Fit and evaluate ``model`` on every fold of ``split`` (a headmri.splits-style table)."""
    predictions, metrics, importance = [], [], []
    for fold, rows in split.groupby("fold", sort=True):
        pipeline, subjects = _fit_fold(features, rows, task, model, settings)
        predictions.append(subjects)
        metrics.append(fold_metrics(subjects, task.classes, task=task.name, model=model, fold=int(fold)))
        test = rows[rows["split"] == "test"]
        if test[SUBJECT if SUBJECT in test.columns else "participant_id"].nunique() >= 2:  # participants, not images
            importance.append(_importance(pipeline, features, test, settings).assign(fold=int(fold)))
    table = pd.concat(metrics, ignore_index=True).assign(source=task.source, validation=task.validation)
    imp = pd.concat(importance, ignore_index=True) if importance else pd.DataFrame(
        columns=["feature", "importance_mean", "importance_std", "n_subjects", "fold"])
    imp = imp.assign(task=task.name, model=model, source=task.source)
    return BaselineResult(pd.concat(predictions, ignore_index=True), table, imp)


def pooled_test_metrics(result: BaselineResult, task: Task, model: str) -> pd.DataFrame:
    """One row from every fold's test predictions pooled (fold 0): the leave-one-subject-out score, where
    each fold tests a single subject and per-fold AUCs do not exist (the CNNs' pooled rows come from the same
    ``headmri.evaluation.metrics.pooled_test_metrics``)."""
    row = pooled_rows(result.predictions, task.classes, task=task.name, model=model)
    return row.assign(source=task.source, validation=task.validation)


def importance_summary(importance: pd.DataFrame) -> pd.DataFrame:
    """Mean importance per feature over folds, most important first."""
    summary = importance.groupby("feature", sort=False).agg(importance=("importance_mean", "mean"),
                                                             folds=("fold", "nunique"))
    return summary.sort_values("importance", ascending=False).reset_index()
