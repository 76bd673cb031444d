"""The library end to end on a small synthetic cohort: demo runs -> indicators -> RFCS vectors ->
SVM / random forest on subject-level folds, with the planted regions on top of the permutation importance."""

from __future__ import annotations

import numpy as np
import pytest

from headmri.demo import bold as demo
from headmri.fmri import baselines as bl
from headmri.fmri.bold import BoldFiles, Grid
from headmri.fmri.indicators import IndicatorSettings, compute_indicators
from headmri.fmri.validation import leave_one_subject_out, stratified_kfold

pytestmark = pytest.mark.slow  # 20 subjects through the indicators: a few minutes on the shared VM

COARSE = Grid(shape=(31, 37, 31), affine=np.array([[6.0, 0, 0, -90], [0, 6.0, 0, -126], [0, 0, 6.0, -72], [0, 0, 0, 1]]))
PLANTED = {"Precuneus_L", "Precuneus_R"}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("bold_cohort")
    settings = demo.BoldDemoSettings(seed=5, volumes=150, grid=COARSE)
    effects = tuple(e for e in demo.DEFAULT_EFFECTS if e.group == "MWoA")
    participants = demo.make_bold_cohort(out, {"HC": 10, "MWoA": 10}, effects, settings)
    vectors, names = {}, None
    for pid in participants["participant_id"]:
        paths = demo.subject_paths(out, pid[4:])
        files = BoldFiles(subject=pid, bold=paths["bold"], mask=paths["mask"], confounds=paths["confounds"])
        result = compute_indicators(files, IndicatorSettings(grid=None, confounds=("csf", "white_matter")))
        vectors[pid], names = result.rfcs.strength, result.rfcs.atlas.names
    return participants, bl.feature_table(vectors, names)


def test_baselines_separate_the_planted_cohort_and_find_the_planted_regions(cohort):
    participants, features = cohort
    task = bl.Task("migraine", ("HC", "MWoA"), validation="5-fold")
    split = stratified_kfold(participants, ["HC", "MWoA"], folds=5, seed=1)
    for model in bl.MODELS:
        result = bl.evaluate_baseline(features, split, task, model, bl.BaselineSettings(trees=200, importance_repeats=10))
        pooled = bl.pooled_test_metrics(result, task, model)
        assert pooled["auc"].iloc[0] >= 0.8, model
        top = set(bl.importance_summary(result.importance)["feature"].head(3))
        assert PLANTED <= top, (model, top)


def test_leave_one_subject_out_rows(cohort):
    participants, features = cohort
    task = bl.Task("migraine", ("HC", "MWoA"), validation="loso")
    result = bl.evaluate_baseline(features, leave_one_subject_out(participants, ["HC", "MWoA"]), task, "svm")
    pooled = bl.pooled_test_metrics(result, task, "svm")
    assert pooled["n_subjects"].iloc[0] == len(participants) and pooled["accuracy"].iloc[0] >= 0.8
    assert result.metrics["fold"].nunique() == len(participants)
