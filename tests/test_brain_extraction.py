"""Brain extraction: the mask overlaps the truth on real anatomy, outputs stay in the subject's native
grid and orientation, and a failure leaves no output behind."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest

from headmri.backends import load
from headmri.errors import ConfigError, InputError

from conftest import grid_affine

# the functions the brain_extraction rule runs for each backend (headmri.backends)
DEEPBET = load("brain_extraction", "embedded")
BET = load("brain_extraction", "fsl")
LIA_SHAPE = (96, 110, 112)  # 2 mm: 192 x 220 x 224 mm


@pytest.fixture(scope="module")
def template_as_lia_subject(mni_template, tmp_path_factory):
    """The MNI head on an oblique 2 mm LIA grid (fast for deepbet), and its brain mask on that grid."""
    from nilearn.image import resample_img

    folder = tmp_path_factory.mktemp("lia")
    affine = grid_affine(LIA_SHAPE, 2.0, "LIA", oblique_deg=(8, -5, 6), center_mm=(0, -18, 10))
    head = resample_img(nib.load(mni_template.head), target_affine=affine, target_shape=LIA_SHAPE,
                        interpolation="linear", force_resample=True, copy_header=True)
    mask = resample_img(nib.load(mni_template.brain_mask), target_affine=affine, target_shape=LIA_SHAPE,
                        interpolation="nearest", force_resample=True, copy_header=True)
    path = folder / "sub-01_T1w.nii.gz"
    nib.save(nib.Nifti1Image(head.get_fdata(dtype=np.float32), affine), path)
    return path, mask.get_fdata() > 0


@pytest.fixture(scope="module")
def deepbet_outputs(template_as_lia_subject, tmp_path_factory):
    t1w, truth = template_as_lia_subject
    out = tmp_path_factory.mktemp("deepbet")
    brain, mask = out / "brain.nii.gz", out / "mask.nii.gz"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DEEPBET(t1w, brain, mask, subject="sub-01", threads=2)
    return t1w, truth, brain, mask, [str(w.message) for w in caught]


@pytest.mark.slow
def test_deepbet_mask_overlaps_the_template_brain_mask(deepbet_outputs):
    _t1w, truth, _brain, mask, _warnings = deepbet_outputs
    found = np.asanyarray(nib.load(mask).dataobj) > 0
    dice = 2 * (found & truth).sum() / (found.sum() + truth.sum())
    assert dice > 0.8, dice


@pytest.mark.slow
def test_deepbet_loading_its_model_leaves_no_deprecation_noise_in_the_log(deepbet_outputs):
    *_, messages = deepbet_outputs
    assert not [m for m in messages if "torch.jit.load" in m], messages


@pytest.mark.slow
def test_outputs_keep_the_native_lia_oblique_grid(deepbet_outputs):
    t1w, truth, brain, mask, _warnings = deepbet_outputs
    source = nib.load(t1w)
    for path in (brain, mask):
        img = nib.load(path)
        assert img.shape == source.shape and np.allclose(img.affine, source.affine)
        assert nib.aff2axcodes(img.affine) == ("L", "I", "A")
    mask_data = np.asanyarray(nib.load(mask).dataobj)
    assert nib.load(mask).get_data_dtype() == np.uint8 and set(np.unique(mask_data)) == {0, 1}
    brain_data = nib.load(brain).get_fdata()
    assert not brain_data[mask_data == 0].any()  # skull stripped
    assert np.allclose(brain_data[mask_data == 1], source.get_fdata()[mask_data == 1], rtol=1e-5)
    # The mask sits where the brain is in this very voxel order (not flipped along any axis).
    for axis in range(3):
        assert (np.flip(mask_data, axis) > 0)[truth].mean() < (mask_data > 0)[truth].mean()


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_bad_input_fails_before_work_and_writes_nothing(write_nifti, tmp_path):
    affine = grid_affine((64, 72, 64), 2.0)
    t1w = write_nifti("sub-02_T1w.nii.gz", np.zeros((64, 72, 64), np.int16), affine)
    out = tmp_path / "out"
    with pytest.raises(InputError) as info:
        DEEPBET(t1w, out / "brain.nii.gz", out / "mask.nii.gz", subject="sub-02")
    assert "sub-02" in str(info.value) and str(t1w) in str(info.value) and "all zeros" in str(info.value)
    assert _leftovers(out) == []


def test_failure_while_writing_leaves_no_partial_output(synthetic_t1w, tmp_path):
    """The second output cannot be written (its name is taken by a folder): the first, already
    written to its temporary name, must not appear either."""
    from headmri.preprocess.native import save_together

    t1w, truth = synthetic_t1w()
    img = nib.load(t1w)
    out = tmp_path / "out"
    (out / "mask.nii.gz").mkdir(parents=True)
    with pytest.raises(OSError):
        save_together({out / "brain.nii.gz": img, out / "mask.nii.gz": nib.Nifti1Image(truth.astype(np.uint8), img.affine)})
    assert _leftovers(out) == ["mask.nii.gz"]  # only the obstacle: no brain, no temporary files


def test_fsl_backend_failure_leaves_no_output_or_scratch(synthetic_t1w, tmp_path, monkeypatch):
    """Without FSL (or with a broken one) BET fails; neither outputs nor its scratch folder remain."""
    t1w, _ = synthetic_t1w()
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no `bet` can be found
    monkeypatch.setenv("FSLOUTPUTTYPE", "NIFTI_GZ")
    out = tmp_path / "out"
    with pytest.raises(Exception):  # noqa: B017 (whatever Nipype raises without `bet`; the point is no leftovers)
        BET(t1w, out / "brain.nii.gz", out / "mask.nii.gz", subject="sub-01")
    assert _leftovers(out) == []


def test_unknown_backend_is_a_config_error_naming_the_choices():
    with pytest.raises(ConfigError, match=r"unknown brain extraction backend 'robex'.*embedded.*fsl"):
        load("brain_extraction", "robex")
