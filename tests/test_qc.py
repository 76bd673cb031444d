"""QC: the per-subject numbers measure what they claim, and the cohort table flags the subjects that
differ from the rest (robust z) or fail outright (absolute floors)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from headmri.qc import (
    dice,
    flag_outliers,
    normalised_cross_correlation,
    plot_registration,
    qc_subject,
    qc_table,
    robust_z,
    subject_metrics,
)

from conftest import ellipsoid_head, grid_affine

# A small "template" grid (RAS, 4 mm) keeps these tests fast; qc_subject does not care about the grid.
SHAPE = (40, 48, 40)
AFFINE = grid_affine(SHAPE, 4.0, "RAS")


def test_ncc_is_one_for_gain_and_offset_and_low_for_noise():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(10, 10, 10))
    inside = np.ones(a.shape, bool)
    assert normalised_cross_correlation(a, 3 * a + 7, inside) == pytest.approx(1.0)
    assert abs(normalised_cross_correlation(a, rng.normal(size=a.shape), inside)) < 0.1


def test_dice_of_known_overlap():
    a = np.zeros((10, 10, 10), bool)
    b = a.copy()
    a[:5], b[2:7] = True, True
    assert dice(a, b) == pytest.approx(2 * 300 / 1000)


@pytest.fixture
def cohort_images(write_nifti):
    head, brain = ellipsoid_head(SHAPE, AFFINE)
    template = write_nifti("template.nii.gz", head, AFFINE)
    template_mask = write_nifti("template_mask.nii.gz", brain.astype(np.uint8), AFFINE)
    return head, brain, template, template_mask


def test_qc_subject_writes_a_row_and_a_picture(cohort_images, write_nifti, tmp_path):
    head, brain, template, template_mask = cohort_images
    brain_mni = write_nifti("brain_mni.nii.gz", head * brain, AFFINE)
    mask_mni = write_nifti("mask_mni.nii.gz", brain.astype(np.uint8), AFFINE)
    original_affine = grid_affine((120, 100, 96), (1.0, 1.2, 1.25), "LIA", oblique_deg=(6, 0, 0))
    original = write_nifti("sub-01_T1w.nii.gz", np.ones((120, 100, 96), np.int16), original_affine)
    native = np.zeros((120, 100, 96), np.uint8)
    native[:10, :10, :10] = 1  # 1000 voxels of 1.5 mm3: 1.5 ml
    mask_native = write_nifti("mask_native.nii.gz", native, original_affine)
    png, row_path = tmp_path / "qc" / "sub-01_qc.png", tmp_path / "qc" / "rows" / "sub-01.tsv"
    row = qc_subject(brain_mni, mask_mni, template, template_mask, png, row_path, subject="sub-01",
                     original_t1w=original, mask_native=mask_native)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    table = pd.read_csv(row_path, sep="\t")
    assert list(table["participant_id"]) == ["sub-01"] and len(table) == 1
    assert table.loc[0, "mask_dice"] == pytest.approx(1.0)
    assert table.loc[0, "similarity_ncc"] > 0.9  # brain-only vs the whole head, compared inside the brain
    assert (table.loc[0, "voxel_i_mm"], table.loc[0, "voxel_j_mm"], table.loc[0, "voxel_k_mm"]) == (1.0, 1.2, 1.25)
    assert table.loc[0, "orientation"] == "LIA" and bool(table.loc[0, "oblique"])
    assert table.loc[0, "brain_volume_ml"] == pytest.approx(1.5) and table.loc[0, "brain_volume_space"] == "native"
    assert row["participant_id"] == "sub-01"


def test_a_misregistered_brain_scores_low(cohort_images, write_nifti, tmp_path):
    head, brain, template, template_mask = cohort_images
    shifted = np.roll(brain, 6, axis=1)  # 24 mm off
    brain_mni = write_nifti("brain_mni.nii.gz", np.roll(head, 6, axis=1) * shifted, AFFINE)
    mask_mni = write_nifti("mask_mni.nii.gz", shifted.astype(np.uint8), AFFINE)
    original = write_nifti("sub-02_T1w.nii.gz", np.ones((60, 72, 60), np.int16), grid_affine((60, 72, 60), 2.0, "RAS"))
    row = subject_metrics(brain_mni, mask_mni, template, template_mask, subject="sub-02", original_t1w=original)
    assert row["mask_dice"] < 0.8 and row["similarity_ncc"] < 0.6
    assert row["brain_volume_space"] == "MNI" and not row["oblique"] and row["orientation"] == "RAS"


def test_template_on_another_grid_is_resampled_not_misread(cohort_images, write_nifti, tmp_path):
    """The same template stored RPS (voxel order reversed front to back): the world is the same, and the
    head sits off-centre along that axis, so reading the voxels as if on the subject's grid would fail."""
    head, brain, _template, _mask = cohort_images
    reverse_j = np.array([[1, 0, 0, 0], [0, -1, 0, SHAPE[1] - 1], [0, 0, 1, 0], [0, 0, 0, 1]])
    flipped = nib.Nifti1Image(np.flip(head, 1), AFFINE @ reverse_j)
    flipped_mask = nib.Nifti1Image(np.flip(brain, 1).astype(np.uint8), flipped.affine)
    assert dice(np.flip(brain, 1), brain) < 0.9  # the test would notice a misread
    nib.save(flipped, tmp_path / "tpl_rps.nii.gz")
    nib.save(flipped_mask, tmp_path / "tpl_rps_mask.nii.gz")
    brain_mni = write_nifti("brain_mni.nii.gz", head * brain, AFFINE)
    mask_mni = write_nifti("mask_mni.nii.gz", brain.astype(np.uint8), AFFINE)
    original = write_nifti("t1w.nii.gz", np.ones((60, 72, 60), np.int16), grid_affine((60, 72, 60), 2.0, "RAS"))
    row = subject_metrics(brain_mni, mask_mni, tmp_path / "tpl_rps.nii.gz", tmp_path / "tpl_rps_mask.nii.gz",
                          subject="sub-03", original_t1w=original)
    assert row["mask_dice"] == pytest.approx(1.0) and row["similarity_ncc"] > 0.9


def test_robust_z_ignores_the_outlier_it_measures():
    values = pd.Series([10.0, 11, 9, 10.5, 9.5, 10, 100])
    z = robust_z(values)
    assert z.iloc[-1] > 20 and (z.iloc[:-1].abs() < 2).all()
    assert (robust_z(pd.Series([5.0, 5, 5])) == 0).all()  # no spread: nobody is an outlier
    assert robust_z(pd.Series([5.0, 5, 5, 5, 9])).iloc[-1] > 3  # MAD 0: the mean absolute deviation stands in


def _rows(n=12, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "participant_id": [f"sub-{i:02d}" for i in range(n)],
        "similarity_ncc": 0.95 + rng.normal(0, 0.01, n),
        "mask_dice": 0.96 + rng.normal(0, 0.005, n),
        "brain_volume_ml": 1400 + rng.normal(0, 60, n),
    })


def test_outliers_are_flagged_per_metric_with_reasons():
    rows = _rows()
    rows.loc[3, "mask_dice"] = 0.86  # a bad mask
    rows.loc[7, "brain_volume_ml"] = 2300  # a mask that took the skull
    rows.loc[9, "brain_volume_ml"] = 700  # a mask that lost half the brain
    rows.loc[5, "similarity_ncc"] = 0.999  # unusually *good* similarity is not a problem
    table = flag_outliers(rows, outlier_z=3.0)
    assert list(table.loc[table["outlier"], "participant_id"]) == ["sub-03", "sub-07", "sub-09"]
    assert "mask_dice" in table.loc[3, "outlier_reasons"] and "robust z" in table.loc[3, "outlier_reasons"]
    assert "brain_volume_ml" in table.loc[7, "outlier_reasons"]
    assert table.loc[0, "outlier_reasons"] == "" and table["outlier"].dtype == bool
    assert {"similarity_ncc_robust_z", "mask_dice_robust_z", "brain_volume_ml_robust_z"} <= set(table.columns)


def test_a_cohort_that_failed_as_a_whole_is_caught_by_the_floors():
    rows = _rows()
    rows["mask_dice"] = 0.6 + np.linspace(0, 0.01, len(rows))  # every registration failed alike
    table = flag_outliers(rows, outlier_z=3.0)
    assert table["outlier"].all() and table["outlier_reasons"].str.contains("below 0.8").all()


def test_qc_table_combines_rows_and_draws_the_cohort(tmp_path):
    rows = pd.DataFrame({
        "participant_id": [f"sub-{i:02d}" for i in range(6)],
        "similarity_ncc": [0.95, 0.94, 0.96, 0.95, 0.93, 0.95],
        "mask_dice": [0.96, 0.95, 0.70, 0.96, 0.97, 0.95],
        "brain_volume_ml": [1400, 1350, 1420, 1380, 1450, 1390],
    })
    paths = []
    for i, row in rows.sample(frac=1, random_state=1).iterrows():  # rows arrive in any order
        paths.append(tmp_path / f"row{i}.tsv")
        row.to_frame().T.to_csv(paths[-1], sep="\t", index=False)
    table = qc_table(paths, tmp_path / "qc" / "preprocessing.tsv", outlier_z=3.0, png_out=tmp_path / "qc" / "preprocessing.png")
    written = pd.read_csv(tmp_path / "qc" / "preprocessing.tsv", sep="\t")
    assert list(written["participant_id"]) == sorted(rows["participant_id"])
    assert list(written.loc[written["outlier"], "participant_id"]) == ["sub-02"]
    assert (tmp_path / "qc" / "preprocessing.png").read_bytes()[:4] == b"\x89PNG"
    assert len(table) == 6


def test_the_spread_floor_keeps_near_identical_scans_unflagged():
    # 12 near-identical scans: Dice differs in the fourth decimal, one by 0.002
    table = pd.DataFrame({
        "participant_id": [f"sub-{i:02d}" for i in range(12)],
        "similarity_ncc": [0.950] * 12,
        "mask_dice": [0.9601, 0.9600, 0.9602, 0.9599, 0.9601, 0.9600, 0.9598, 0.9601, 0.9600, 0.9602, 0.9599, 0.958],
        "brain_volume_ml": [1400.0] * 12,
    })
    assert flag_outliers(table, 3.0)["outlier"].iloc[-1], "without a floor, 0.002 is many robust SDs"
    floored = flag_outliers(table, 3.0, min_spread=0.01)
    assert not floored["outlier"].any()
    real = table.copy()
    real.loc[11, "mask_dice"] = 0.85  # a real failure still stands out above the floor
    assert flag_outliers(real, 3.0, min_spread=0.01)["outlier"].iloc[-1]


def _png_height(path) -> int:
    return int.from_bytes(path.read_bytes()[20:24], "big")


def test_the_picture_shows_the_native_mask_over_the_native_t1w(cohort_images, write_nifti, tmp_path):
    head, brain, template, template_mask = cohort_images
    brain_mni = write_nifti("brain_mni.nii.gz", head * brain, AFFINE)
    write_nifti("mask_mni.nii.gz", brain.astype(np.uint8), AFFINE)
    original = write_nifti("sub-01_T1w.nii.gz", head, AFFINE)
    mask_native = write_nifti("mask_native.nii.gz", brain.astype(np.uint8), AFFINE)
    without, with_native = tmp_path / "mni.png", tmp_path / "both.png"
    plot_registration(brain_mni, template_mask, without, title="MNI only")
    plot_registration(brain_mni, template_mask, with_native, title="native too", native=(original, mask_native))
    assert _png_height(with_native) == 2 * _png_height(without)  # two more rows of cuts: native sagittal and axial


def test_an_oblique_native_scan_is_drawn_on_its_voxel_grid_with_cuts_through_its_brain(cohort_images, write_nifti):
    from headmri.qc import _cut_coords, _display_grid

    head, brain, _, _ = cohort_images
    tilt = np.radians(10.0)  # LIA storage, tilted 10 degrees about x: nilearn would resample it
    rotation = np.array([[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]])
    lia = np.array([[-1, 0, 0], [0, 0, 1], [0, -1, 0]]) * 4.0
    affine = np.eye(4)
    affine[:3, :3] = rotation @ lia
    affine[:3, 3] = [80.0, -90.0, 80.0]
    shown = _display_grid(write_nifti("oblique_T1w.nii.gz", head, affine))
    mask = _display_grid(write_nifti("oblique_mask.nii.gz", brain.astype(np.uint8), affine))
    assert np.allclose(shown.affine[:3, :3], np.diag([4.0, 4.0, 4.0]))  # RAS, no rotation left
    assert sorted(shown.shape) == sorted(head.shape)  # axes permuted, not resampled
    assert np.isclose(np.asarray(shown.dataobj).sum(), head.sum(), rtol=1e-5)  # no interpolation
    for mode in "xz":
        axis = "xyz".index(mode)
        voxels = np.argwhere(np.asarray(mask.dataobj) > 0)
        extent = nib.affines.apply_affine(mask.affine, voxels)[:, axis]
        cuts = _cut_coords(mask, mode)
        assert len(cuts) == 7 and extent.min() < cuts.min() < cuts.max() < extent.max()
