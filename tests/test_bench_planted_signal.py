"""bench/bench_planted_signal.py: the planted structures' intensity ratio, per subject and task, with no model."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from headmri.paths import path_table

from bench_loader import bench_script

PLANTED = 53  # Right-Hippocampus


@pytest.fixture(scope="module")
def bench():
    with bench_script("bench_planted_signal") as module:
        yield module


def write_subject(table: dict, subject: str, darkening: float) -> None:
    dseg = np.zeros((6, 6, 6), np.int16)
    dseg[1:5, 1:5, 1:5] = 2  # white matter
    dseg[1:3, 1:3, 1:3] = PLANTED
    image = np.where(dseg > 0, 100.0, 0.0).astype(np.float32)
    image[dseg == PLANTED] *= 1 - darkening
    for key, data in (("brain_mni", image), ("dseg_mni", dseg)):
        path = Path(table[key].format(subject=subject))
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.Nifti1Image(data, np.eye(4)).to_filename(path)


def expected_ratio(darkening: float) -> float:
    """8 planted voxels of the 64 in the brain, darkened; the rest at 100."""
    return (1 - darkening) / ((56 + 8 * (1 - darkening)) / 64)


def cohort(tmp_path, darkening: dict[str, float]) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    table = path_table(str(tmp_path))
    for subject, value in darkening.items():
        write_subject(table, subject, value)
    split = pd.DataFrame([
        {"participant_id": f"sub-{s}", "group": "APTH" if s.startswith("apth") else "HC", "fold": fold,
         "split": "test" if s.endswith(str(fold)) else "train"}
        for fold in (1, 2) for s in darkening])
    truth = pd.DataFrame([{"group": "APTH", "region": "Hippocampus", "name": "Right-Hippocampus", "label": PLANTED,
                           "hemisphere": "R", "tissue": "subcortical", "effect": -0.25}])
    return split, truth, table


def test_a_darkened_planted_structure_separates_the_groups_and_each_test_pair(bench, tmp_path):
    split, truth, table = cohort(tmp_path, {"hc1": 0.0, "hc2": 0.02, "apth1": 0.25, "apth2": 0.20})
    row, people = bench.task_rows(split, truth, table)
    assert row["feature_auc"] == 1.0 and row["feature_test_folds_right"] == "2/2"
    assert row["gap"] == pytest.approx(expected_ratio(0.02) - expected_ratio(0.20), abs=1e-3)
    ratios = people.set_index("participant_id")["ratio"]
    assert ratios["sub-hc1"] == pytest.approx(1.0) and ratios["sub-apth1"] == pytest.approx(expected_ratio(0.25))


def test_a_patient_as_bright_as_the_controls_shows_as_an_overlap(bench, tmp_path):
    split, truth, table = cohort(tmp_path, {"hc1": 0.0, "hc2": 0.1, "apth1": 0.25, "apth2": 0.0})
    row, _ = bench.task_rows(split, truth, table)
    assert row["gap"] < 0 and row["feature_test_folds_right"] == "1/2" and row["feature_auc"] < 1.0
