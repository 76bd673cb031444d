"""SVM and random forest on RFCS vectors: subject-level folds, the structural metrics' columns, and
permutation importance that finds the informative region."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from headmri.errors import InputError, LeakageError
from headmri.evaluation.metrics import METRIC_COLUMNS, fold_metrics
from headmri.fmri import baselines as bl
from headmri.fmri.validation import leave_one_subject_out, stratified_kfold
from headmri.splits import COLUMNS, check_leakage, make_splits

REGIONS = [f"Region_{i}" for i in range(8)]


def _cohort(n_per_class=12, classes=("HC", "migraine"), seed=0, shift=2.0):
    """RFCS-like vectors; only Region_3 differs between classes (by ``shift`` within-class sds)."""
    rng = np.random.default_rng(seed)
    rows, vectors = [], {}
    for k, group in enumerate(classes):
        for i in range(n_per_class):
            pid = f"sub-{group.lower()}{i:02d}"
            v = 0.3 + 0.05 * rng.standard_normal(len(REGIONS))
            v[3] += shift * 0.05 * k
            vectors[pid] = v
            rows.append({"participant_id": pid, "group": group})
    return pd.DataFrame(rows), bl.feature_table(vectors, REGIONS)


def test_loso_tests_every_subject_once_and_trains_on_all_others():
    participants, _ = _cohort(4)
    split = leave_one_subject_out(participants, ["HC", "migraine"])
    assert list(split.columns) == COLUMNS
    assert split["fold"].nunique() == 8
    tests = split[split["split"] == "test"]
    assert sorted(tests["participant_id"]) == sorted(participants["participant_id"]) and tests["fold"].is_unique
    assert (split.groupby("fold")["split"].apply(lambda s: (s == "train").sum()) == 7).all()


def test_kfold_partitions_subjects_and_keeps_classes_in_every_test_fold():
    participants, _ = _cohort(10)
    split = stratified_kfold(participants, ["HC", "migraine"], folds=5, seed=1)
    tests = split[split["split"] == "test"]
    assert tests["participant_id"].is_unique and len(tests) == 20
    assert (tests.groupby("fold")["group"].nunique() == 2).all()
    check_leakage(split)
    with pytest.raises(InputError, match="at least 5 subjects per class"):
        stratified_kfold(participants.iloc[:13], ["HC", "migraine"], folds=5)


def test_check_leakage_would_catch_a_slice_level_style_split():
    participants, _ = _cohort(4)
    split = leave_one_subject_out(participants, ["HC", "migraine"])
    leaky = pd.concat([split, split[(split["fold"] == 1) & (split["split"] == "test")].assign(split="train")])
    with pytest.raises(LeakageError):
        check_leakage(leaky)


@pytest.mark.parametrize("model", bl.MODELS)
def test_baselines_learn_a_planted_difference_with_the_structural_columns(model):
    participants, features = _cohort(12, shift=4.0)
    split = stratified_kfold(participants, ["HC", "migraine"], folds=4, seed=0)
    task = bl.Task("migraine", ("HC", "migraine"), validation="4-fold")
    result = bl.evaluate_baseline(features, split, task, model, bl.BaselineSettings(trees=100, importance_repeats=5))
    structural = fold_metrics(result.predictions[result.predictions["fold"] == 1], task.classes, task="t", model="m", fold=1)
    assert list(result.metrics.columns) == list(structural.columns) + ["source", "validation"]
    test = result.metrics[result.metrics["split"] == "test"]
    assert len(test) == 4 and test["accuracy"].mean() > 0.8
    assert set(result.metrics["source"]) == {"rfcs"} and set(result.metrics["validation"]) == {"4-fold"}
    top = bl.importance_summary(result.importance)
    assert top["feature"].iloc[0] == "Region_3" and top["folds"].iloc[0] == 4


def test_without_a_difference_the_baseline_is_not_better_than_chance():
    participants, features = _cohort(12, shift=0.0, seed=3)
    split = leave_one_subject_out(participants, ["HC", "migraine"])
    task = bl.Task("migraine", ("HC", "migraine"), validation="loso")
    result = bl.evaluate_baseline(features, split, task, "svm", bl.BaselineSettings())
    pooled = bl.pooled_test_metrics(result, task, "svm")
    assert len(pooled) == 1 and pooled["fold"].iloc[0] == 0 and pooled["n_subjects"].iloc[0] == 24
    assert pooled["auc"].iloc[0] < 0.8
    assert result.importance.empty  # single-subject test sets: nothing to permute


def test_three_classes_give_macro_metrics_and_every_probability():
    participants, features = _cohort(8, classes=("HC", "MWoA", "MWA"), shift=5.0)
    split = stratified_kfold(participants, ["HC", "MWoA", "MWA"], folds=4)
    task = bl.Task("three", ("HC", "MWoA", "MWA"))
    result = bl.evaluate_baseline(features, split, task, "random_forest", bl.BaselineSettings(trees=50, importance_repeats=3))
    probs = result.predictions[["prob_HC", "prob_MWoA", "prob_MWA"]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert set(METRIC_COLUMNS) <= set(result.metrics.columns)


def test_a_fold_without_training_subjects_of_a_class_is_refused():
    participants, features = _cohort(4)
    split = leave_one_subject_out(participants, ["HC", "migraine"])
    split.loc[(split["fold"] == 1) & (split["group"] == "migraine"), "split"] = "test"
    with pytest.raises(InputError, match="every class"):
        bl.evaluate_baseline(features, split, bl.Task("m", ("HC", "migraine")), "svm")


def test_baselines_run_on_the_cnn_split_file_training_on_train_only():
    participants, features = _cohort(12, shift=4.0)
    split = make_splits(participants, ["HC", "migraine"], folds=3, val_per_class=2, test_per_class=2)
    features_changed = features.copy()
    val_ids = split[(split["fold"] == 1) & (split["split"] == "val")]["participant_id"]
    features_changed.loc[list(val_ids)] += 100.0  # val subjects must not influence the fit
    task = bl.Task("migraine", ("HC", "migraine"))
    settings = bl.BaselineSettings(trees=50, importance_repeats=2)
    a = bl.evaluate_baseline(features, split[split["fold"] == 1], task, "random_forest", settings)
    b = bl.evaluate_baseline(features_changed, split[split["fold"] == 1], task, "random_forest", settings)
    test_a = a.predictions[a.predictions["split"] == "test"]["prob_migraine"].to_numpy()
    test_b = b.predictions[b.predictions["split"] == "test"]["prob_migraine"].to_numpy()
    np.testing.assert_allclose(test_a, test_b)
    assert set(a.metrics["split"]) == {"test", "val", "train"}
