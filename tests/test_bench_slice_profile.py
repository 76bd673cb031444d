"""bench/bench_slice_profile.py: held-out slices split into those through the planted labels and the rest."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bench_loader import bench_script


@pytest.fixture(scope="module")
def bench():
    with bench_script("bench_slice_profile") as module:
        yield module


def test_only_slices_with_enough_planted_voxels_count_as_planted(bench, tmp_path):
    atlas = np.zeros((6, 4, 4), dtype=np.int16)
    atlas[1, :2, :2] = 17  # 4 voxels of the planted label in slice 1
    atlas[3] = 17          # 16 in slice 3
    atlas[4] = 5           # another label
    path = tmp_path / "atlas.nii.gz"
    nib.save(nib.Nifti1Image(atlas, np.eye(4)), path)
    assert bench.planted_slice_mask(path, {17}, axis=0, min_voxels=5).tolist() == [False, False, False, True, False, False]
    assert bench.planted_slice_mask(path, {17}, axis=0, min_voxels=1)[[1, 3]].all()


def test_a_subject_outvoted_by_its_other_slices_is_ranked_right_by_its_planted_ones(bench):
    planted = np.array([True, True, False, False, False])
    slices = pd.DataFrame({
        "participant_id": ["p"] * 5 + ["c"] * 5 + ["t"] * 5,
        "split": ["test"] * 10 + ["train"] * 5,
        "class_index": [1] * 5 + [0] * 5 + [1] * 5,
        "slice_index": list(range(5)) * 3,
        "prob_migraine": [0.9, 0.9, 0.1, 0.1, 0.1, 0.3, 0.3, 0.8, 0.8, 0.8, 1, 1, 1, 1, 1],
    })
    subjects = bench.subject_rows(slices, planted, "prob_migraine")
    assert set(subjects["participant_id"]) == {"p", "c"}  # training subjects are not scored
    assert bench.pairs_right(subjects, "all_slices") == (0.0, 1)
    assert bench.pairs_right(subjects, "planted_slices") == (1.0, 1)
    assert subjects.set_index("participant_id").loc["p", "n_planted"] == 2
