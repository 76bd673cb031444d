"""A task's figures: ROC curves and confusion counts from the test predictions, the mean map over folds."""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from headmri.errors import InputError
from headmri.explain.task_figures import (
    FigureInputs,
    FigureOutputs,
    confusion_counts,
    figure_folds,
    held_out_predictions,
    mean_over_folds,
    roc_curves,
    task_figures,
)

CLASSES = ("HC", "migraine")


def _predictions(tmp_path, fold, rows):
    frame = pd.DataFrame(rows, columns=["participant_id", "split", "class_index", "prob_migraine"])
    frame["prob_HC"] = 1 - frame["prob_migraine"]
    frame["predicted"] = np.where(frame["prob_migraine"] >= 0.5, "migraine", "HC")
    path = tmp_path / f"fold-{fold}.tsv"
    frame.to_csv(path, sep="\t", index=False)
    return path


@pytest.fixture
def predictions(tmp_path):
    return {
        # fold 1: perfectly separated; the validation subject must be ignored
        1: _predictions(tmp_path, 1, [("sub-a", "test", 0, 0.2), ("sub-b", "test", 1, 0.7), ("sub-c", "test", 1, 0.9),
                                      ("sub-v", "val", 0, 0.99)]),
        # fold 2: one control scored above one patient (AUC 0.75), one control misclassified
        2: _predictions(tmp_path, 2, [("sub-d", "test", 0, 0.6), ("sub-e", "test", 0, 0.1), ("sub-f", "test", 1, 0.4),
                                      ("sub-g", "test", 1, 0.8)]),
    }


def test_roc_curves_and_confusion_counts_use_only_test_subjects(predictions):
    tested = held_out_predictions(predictions)
    assert set(tested["split"]) == {"test"} and len(tested) == 7
    curves = {name: auc for name, _fpr, _tpr, auc in roc_curves(tested, CLASSES)}
    # pooled: patients 0.7, 0.9, 0.4, 0.8 against controls 0.2, 0.6, 0.1: 11 of 12 pairs (0.4 < 0.6)
    assert curves == {"fold 1": pytest.approx(1.0), "fold 2": pytest.approx(0.75), "2 folds pooled": pytest.approx(11 / 12)}
    # rows: true HC, migraine; columns: predicted HC, migraine
    np.testing.assert_array_equal(confusion_counts(tested, CLASSES), [[2, 1], [1, 3]])


def test_a_fold_with_one_class_only_gets_no_auc(tmp_path):
    path = _predictions(tmp_path, 1, [("sub-a", "test", 1, 0.2), ("sub-b", "test", 1, 0.7)])
    (_name, _fpr, _tpr, auc), = roc_curves(held_out_predictions({1: path}), CLASSES)
    assert np.isnan(auc)


def test_with_one_test_subject_per_fold_the_roc_curve_pools_the_folds(tmp_path):
    paths = {k: _predictions(tmp_path, k, [(f"sub-{k}", "test", y, p)])
             for k, (y, p) in enumerate([(0, 0.2), (0, 0.7), (1, 0.9), (1, 0.6)], start=1)}
    (name, _fpr, _tpr, auc), = roc_curves(held_out_predictions(paths), CLASSES)
    assert name == "4 folds pooled" and auc == pytest.approx(3 / 4)


def test_mean_over_folds_weighs_folds_equally_and_checks_grids(tmp_path):
    affine = np.eye(4)
    paths = []
    for fold, value in ((1, 1.0), (2, 3.0)):
        paths.append(tmp_path / f"fold-{fold}.nii.gz")
        nib.save(nib.Nifti1Image(np.full((4, 5, 3), value, np.float32), affine), paths[-1])
    assert np.allclose(np.asarray(mean_over_folds(paths).dataobj), 2.0)
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 4), np.float32), affine), tmp_path / "other.nii.gz")
    with pytest.raises(InputError, match="different grids"):
        mean_over_folds([*paths, tmp_path / "other.nii.gz"])


def test_the_figures_leave_out_the_folds_that_did_not_learn_unless_none_did(tmp_path):
    def inputs(flags):
        metrics = {}
        for fold, learned in flags.items():
            metrics[fold] = tmp_path / f"metrics-{fold}-{learned}.tsv"
            pd.DataFrame({"split": ["test", "val"], "learned": [learned] * 2}).to_csv(metrics[fold], sep="\t", index=False)
        maps = {fold: f"mean-{fold}.nii.gz" for fold in flags}
        return FigureInputs("ranking.tsv", maps, "dseg.nii.gz", {}, "template.nii.gz", metrics=metrics)

    assert figure_folds(inputs({1: True, 2: False, 3: True})) == [1, 3]
    assert figure_folds(inputs({1: True, 2: False, 3: True}), exclude_unlearned=False) == [1, 2, 3]
    assert figure_folds(inputs({1: False, 2: False})) == [1, 2]  # none learned: all drawn, the ranking says n_learned 0
    assert figure_folds(FigureInputs("r.tsv", {1: "a", 2: "b"}, "d", {}, "t")) == [1, 2]  # no metrics given: every fold


@pytest.mark.slow  # five nilearn/matplotlib figures: ~15 s on 2 cores
def test_task_figures_writes_every_figure(tmp_path, predictions):
    shape, affine = (20, 24, 18), np.array([[2.0, 0, 0, -20], [0, 2, 0, -24], [0, 0, 2, -18], [0, 0, 0, 1]])
    labels = np.zeros(shape, np.int16)
    labels[3:10, 4:20, 3:15], labels[10:17, 4:20, 3:15], labels[8:12, 10:14, 4:8] = 1022, 2022, 17
    nib.save(nib.Nifti1Image(labels, affine), tmp_path / "dseg.nii.gz")
    head = np.where(labels > 0, 100.0, 10.0).astype(np.float32)
    nib.save(nib.Nifti1Image(head, affine), tmp_path / "template.nii.gz")
    nib.save(nib.Nifti1Image((labels > 0).astype(np.uint8), affine), tmp_path / "mask.nii.gz")
    maps = []
    for fold in (1, 2):
        maps.append(tmp_path / f"mean-{fold}.nii.gz")
        nib.save(nib.Nifti1Image(np.random.default_rng(fold).random(shape).astype(np.float32), affine), maps[-1])
    pd.DataFrame({
        "target": "migraine", "rank": [1, 2, 3], "region": ["ctx-rh-postcentral", "Left-Hippocampus", "ctx-lh-postcentral"],
        "label": [2022, 17, 1022], "hemisphere": ["R", "L", "L"], "tissue": ["ctx", "subcortical", "ctx"],
        "structure": ["postcentral", "Hippocampus", "postcentral"], "mean": [0.9, 0.5, 0.4], "sd": [0.1, 0.05, 0.2],
        "folds_in_top_k": [2, 2, 0], "n_folds": 2, "n_patients": 4,
    }).to_csv(tmp_path / "ranking.tsv", sep="\t", index=False)
    out = {name: tmp_path / "figures" / name for name in ("bars.png", "mean.nii.gz", "mean.png", "top.png", "roc.png", "confusion.png")}
    metrics = {}
    for fold, learned in ((1, True), (2, True), (3, False)):  # fold 3 did not learn: left out of the figures
        metrics[fold] = tmp_path / f"metrics-{fold}.tsv"
        pd.DataFrame({"split": ["test"], "learned": [learned]}).to_csv(metrics[fold], sep="\t", index=False)
    maps.append(tmp_path / "mean-3.nii.gz")
    nib.save(nib.Nifti1Image(np.full(shape, 100.0, np.float32), affine), maps[-1])
    inputs = FigureInputs(tmp_path / "ranking.tsv", dict(zip((1, 2, 3), maps)), tmp_path / "dseg.nii.gz",
                          {**predictions, 3: predictions[2]}, tmp_path / "template.nii.gz", tmp_path / "mask.nii.gz",
                          metrics=metrics)
    task_figures("migraine", CLASSES, inputs, FigureOutputs(out["bars.png"], out["mean.nii.gz"], out["mean.png"], out["top.png"],
                                                            out["roc.png"], out["confusion.png"]), top_k=2, method="gradcam")
    for path in out.values():
        assert path.stat().st_size > 1000, path
    expected = (np.asarray(nib.load(maps[0]).dataobj) + np.asarray(nib.load(maps[1]).dataobj)) / 2  # folds 1, 2 only
    np.testing.assert_allclose(np.asarray(nib.load(out["mean.nii.gz"]).dataobj), expected, rtol=1e-6)
