"""N4 bias-field correction (preprocessing.bias_correction: n4): on a brain the test makes, two tissues
under a known smooth multiplicative field, the corrected brain's tissues are flat again, its contrast is
kept, and the workflow registers the corrected brain; with none (the paper's) it registers the extracted one."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from headmri.errors import InputError
from headmri.preprocess.bias import correct_bias_n4

from conftest import grid_affine
from workflow_runner import dry_run, write_config

SHAPE = (72, 80, 72)  # 2.5 mm: a head-sized brain on a coarse grid, a few seconds of N4


@pytest.fixture(scope="module")
def biased(tmp_path_factory) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """Brain (white matter 1.0 inside grey matter 0.6, an ellipsoid) times exp(field), the field about
    +-15 % across the brain; returns the brain and mask paths, the tissue labels and the field."""
    out = tmp_path_factory.mktemp("bias")
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in SHAPE], indexing="ij"))
    radius = np.sqrt((grid ** 2).sum(0))
    tissue = np.where(radius < 0.5, 2, np.where(radius < 0.85, 1, 0))
    field = 0.15 * (grid[0] + 0.5 * grid[1] - 0.4 * grid[2] ** 2)
    rng = np.random.default_rng(0)
    brain = np.choose(tissue, [0.0, 600.0, 1000.0]) * np.exp(field) * (1 + 0.01 * rng.normal(size=SHAPE))
    affine = grid_affine(SHAPE, 2.5)
    paths = out / "brain.nii.gz", out / "mask.nii.gz"
    nib.save(nib.Nifti1Image((brain * (tissue > 0)).astype(np.float32), affine), paths[0])
    nib.save(nib.Nifti1Image((tissue > 0).astype(np.uint8), affine), paths[1])
    return *paths, tissue, field


def _spread(image: np.ndarray, tissue: np.ndarray, label: int) -> float:
    values = np.log(image[tissue == label])
    return float(np.percentile(values, 95) - np.percentile(values, 5))


def test_n4_flattens_each_tissue_and_keeps_their_contrast(biased, tmp_path):
    brain, mask, tissue, _field = biased
    out = tmp_path / "corrected.nii.gz"
    correct_bias_n4(brain, mask, out, subject="sub-01", threads=1)
    before, after = nib.load(brain).get_fdata(), nib.load(out).get_fdata()
    assert np.allclose(nib.load(out).affine, nib.load(brain).affine) and after.shape == before.shape
    assert not after[tissue == 0].any()  # nothing outside the mask
    for label in (1, 2):  # grey, white: the field's spread within a tissue mostly removed
        assert _spread(after, tissue, label) < 0.5 * _spread(before, tissue, label), label
    ratio = np.median(after[tissue == 2]) / np.median(after[tissue == 1])
    assert 1.55 < ratio < 1.8  # the contrast 1.0 / 0.6 stays
    assert abs(np.median(after[tissue > 0]) / np.median(before[tissue > 0]) - 1) < 1e-3  # the scanner's range


def test_a_mask_off_the_brain_grid_names_the_subject_and_file(biased, tmp_path):
    brain, _mask, _tissue, _field = biased
    other = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((10, 10, 10), np.uint8), np.eye(4)), other)
    with pytest.raises(InputError, match="sub-01.*not on the grid"):
        correct_bias_n4(brain, other, tmp_path / "out.nii.gz", subject="sub-01")
    assert not (tmp_path / "out.nii.gz").exists()


@pytest.mark.parametrize("correction", ["n4", "none"])
def test_the_workflow_registers_the_corrected_brain_only_with_n4(tmp_path, correction):
    configfile = write_config(tmp_path / "config.yaml", results_dir=str(tmp_path / "results"),
                              preprocessing={"bias_correction": correction})
    jobs = dry_run(tmp_path, configfile, "--", "preprocess_all")
    registrations = [job for job in jobs if job.rule == "register_to_mni"]
    assert len(registrations) == 32
    corrected = [any(f.endswith("_desc-biascorr_T1w.nii.gz") for f in job.inputs) for job in registrations]
    assert all(corrected) if correction == "n4" else not any(corrected)
    assert sum(job.rule == "bias_correction" for job in jobs) == (32 if correction == "n4" else 0)
