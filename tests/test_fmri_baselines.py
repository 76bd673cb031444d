"""SVM and random forest on RFCS vectors: subject-level folds, the structural metrics' columns, and
permutation importance that finds the informative region."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

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


# --- participants with several images: grouped calibration folds, one weight per participant ------------

def _sessions_fold(sessions: dict[str, int], seed=0, shift=1.0, duplicate=False):
    """One fold of an image-level split (``subject`` = participant) over HC hc* and migraine mw* participants
    with ``sessions[label]`` images each, the last participant of each class tested; with ``duplicate`` a
    participant's sessions are copies of its first. Returns (rows, features)."""
    rng, rows, vectors = np.random.default_rng(seed), [], {}
    tested = {max(s for s in sessions if s.startswith(p)) for p in ("hc", "mw")}
    for label, n in sessions.items():
        k = int(label.startswith("mw"))
        first = 0.3 + 0.05 * rng.standard_normal(len(REGIONS)) + np.eye(len(REGIONS))[3] * shift * 0.05 * k
        for s in range(1, n + 1):
            pid = f"sub-{label}_ses-{s}"
            vectors[pid] = first if duplicate or s == 1 else first + 0.02 * rng.standard_normal(len(REGIONS))
            rows.append({"participant_id": pid, "fold": 1, "split": "test" if label in tested else "train",
                         "class_index": k, "subject": f"sub-{label}"})
    return pd.DataFrame(rows), bl.feature_table(vectors, REGIONS)


SESSIONS = {"hc1": 3, "hc2": 1, "hc3": 2, "hc4": 1, "hc5": 2, "mw1": 2, "mw2": 3, "mw3": 1, "mw4": 2, "mw5": 1}
TASK = bl.Task("migraine", ("HC", "migraine"))


def test_calibration_folds_never_split_a_participants_sessions():
    rows, _ = _sessions_fold(SESSIONS)
    train = rows[rows["split"] == "train"].reset_index(drop=True)
    participants, y = train["subject"].to_numpy(), train["class_index"].to_numpy()
    # what CalibratedClassifierCV(cv=3) did: image-level stratified folds, one participant on both sides
    assert any(set(participants[a]) & set(participants[b]) for a, b in StratifiedKFold(3).split(train, y))
    splits = bl.calibration_cv(train, 3)
    assert isinstance(splits, list) and len(splits) == 3
    held = np.concatenate([b for _, b in splits])
    assert sorted(held) == list(range(len(train)))  # every image calibrates once
    for fit, calibrate in splits:
        assert not set(participants[fit]) & set(participants[calibrate])
        assert set(y[fit]) == {0, 1}


def test_one_image_per_participant_keeps_the_old_calibration_folds_and_no_weights():
    rows, _ = _sessions_fold(dict.fromkeys(SESSIONS, 1))
    assert bl.calibration_cv(rows, 3) == 3  # CalibratedClassifierCV's own StratifiedKFold(3), as before
    assert bl.participant_weights(rows) is None


def test_a_class_of_one_participant_with_two_sessions_cannot_be_calibrated():
    rows, features = _sessions_fold({"hc1": 2, "hc2": 1, "hc3": 2, "mw1": 2, "mw2": 1})  # mw1 alone trains
    with pytest.raises(InputError, match="one training participant in a class"):
        bl._fit_fold(features, rows, TASK, "svm", bl.BaselineSettings())
    bl._fit_fold(features, rows, TASK, "random_forest", bl.BaselineSettings(trees=10))  # no calibration there


def test_each_participant_weighs_once_however_many_sessions():
    rows, _ = _sessions_fold(SESSIONS)
    weights = bl.participant_weights(rows)
    assert weights[rows["subject"] == "sub-hc1"].tolist() == [1 / 3] * 3
    np.testing.assert_allclose(pd.Series(weights).groupby(rows["subject"]).sum(), 1.0)


def test_identical_sessions_fit_the_svm_as_one_participant():
    """Three copies of a margin violator weighing 1/3 each: the scaler and the SVM are the fit with one copy
    (up to libsvm's tolerance); unweighted, the copies triple its pull (coefficients 50 % off)."""
    settings = bl.BaselineSettings()
    # 30 participants, 8 features, overlapping classes: the SVM is soft-margin and hc01 a margin violator
    many = {f"{c}{i:02d}": 1 for c in ("hc", "mw") for i in range(15)}
    rows, features = _sessions_fold({**many, "hc01": 3}, seed=1, shift=0.5, duplicate=True)
    single = rows[~rows["participant_id"].isin(["sub-hc01_ses-2", "sub-hc01_ses-3"])]
    assert len(single) == len(rows) - 2
    svm = [bl._fit_fold(features, r, TASK, "svm", settings)[0] for r in (rows, single)]
    scalers = [p.named_steps["standardscaler"] for p in svm]
    np.testing.assert_allclose(scalers[0].mean_, scalers[1].mean_)
    np.testing.assert_allclose(scalers[0].scale_, scalers[1].scale_)
    coef = [p.named_steps["calibratedclassifiercv"].calibrated_classifiers_[0].estimator.coef_ for p in svm]
    assert np.linalg.norm(coef[0] - coef[1]) < 0.01 * np.linalg.norm(coef[1])


def test_the_forest_fits_with_the_participant_weights():
    settings = bl.BaselineSettings(trees=50, seed=2)
    rows, features = _sessions_fold(SESSIONS, shift=0.5)
    pipeline, predicted = bl._fit_fold(features, rows, TASK, "random_forest", settings)
    train = rows[rows["split"] == "train"]
    x, y = features.loc[train["participant_id"]].to_numpy(), train["class_index"]
    weights = bl.participant_weights(train)
    by_hand = bl.make_model("random_forest", settings).fit(x, y, standardscaler__sample_weight=weights,
                                                           randomforestclassifier__sample_weight=weights)
    unweighted = bl.make_model("random_forest", settings).fit(x, y)
    everything = features.loc[rows["participant_id"]].to_numpy()
    np.testing.assert_array_equal(predicted["prob_migraine"], by_hand.predict_proba(everything)[:, 1])
    assert not np.array_equal(predicted["prob_migraine"], unweighted.predict_proba(everything)[:, 1])


@pytest.mark.parametrize("model", bl.MODELS)
def test_one_image_per_participant_predicts_as_a_plain_fit(model):
    """What the baselines fitted before participants were weighted and calibration folds grouped."""
    settings = bl.BaselineSettings(trees=50, seed=1)
    rows, features = _sessions_fold(dict.fromkeys(SESSIONS, 1), shift=0.5)
    _, predicted = bl._fit_fold(features, rows, TASK, model, settings)
    train = rows[rows["split"] == "train"]
    classifier = (CalibratedClassifierCV(SVC(kernel="linear"), method="sigmoid", ensemble=False, cv=3) if model == "svm"
                  else RandomForestClassifier(n_estimators=50, random_state=1))
    plain = make_pipeline(StandardScaler(), classifier).fit(features.loc[train["participant_id"]], train["class_index"])
    np.testing.assert_array_equal(predicted["prob_migraine"], plain.predict_proba(features.loc[rows["participant_id"]])[:, 1])
