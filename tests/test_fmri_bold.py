"""Reading and cleaning BOLD runs: what is refused (InputError naming subject and file) and what the
light preprocessing does, on tiny runs the tests write."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from headmri.errors import InputError
from headmri.fmri import bold as fb
from headmri.fmri.alff import amplitude_spectrum
from headmri.fmri.atlas import LabelAtlas
from headmri.fmri.indicators import IndicatorSettings, compute_indicators

SHAPE = (12, 14, 12)
AFFINE = np.array([[3.0, 0, 0, -18], [0, 3.0, 0, -21], [0, 0, 3.0, -18], [0, 0, 0, 1]])
TR = 2.0


def _mask():
    mask = np.zeros(SHAPE, np.uint8)
    mask[2:-2, 2:-2, 2:-2] = 1
    return mask


def _write_run(tmp_path, *, n=120, data=None, tr_sidecar=TR, tr_header=TR, name="sub-01_task-rest_space-MNI152NLin6Asym_desc-preproc_bold.nii.gz",
               seed=0, mask=None):
    rng = np.random.default_rng(seed)
    if data is None:
        data = 500 + rng.standard_normal(SHAPE + (n,)).astype(np.float32)
    img = nib.Nifti1Image(data, AFFINE)
    if data.ndim == 4:
        img.header.set_zooms((3.0, 3.0, 3.0, tr_header))
        img.header.set_xyzt_units("mm", "sec")
    bold = tmp_path / name
    nib.save(img, bold)
    if tr_sidecar is not None:
        (tmp_path / name.replace(".nii.gz", ".json")).write_text(json.dumps({"RepetitionTime": tr_sidecar}))
    mask_path = tmp_path / "sub-01_mask.nii.gz"
    nib.save(nib.Nifti1Image(_mask() if mask is None else mask, AFFINE), mask_path)
    return fb.BoldFiles(subject="sub-01", bold=bold, mask=mask_path, space="MNI152NLin6Asym")


def _refused(files, match, **kw):
    with pytest.raises(InputError, match=match) as info:
        fb.load_bold(files, **kw)
    assert info.value.subject == "sub-01" and info.value.path is not None
    return info.value


def test_a_good_run_loads_with_the_sidecar_tr(tmp_path):
    files = _write_run(tmp_path, tr_sidecar=2.5, tr_header=2.0)
    run = fb.load_bold(files)
    assert run.tr == 2.5 and run.img.shape == SHAPE + (120,) and run.series().shape == (int(_mask().sum()), 120)


def test_the_header_tr_is_used_without_a_sidecar_and_milliseconds_are_converted(tmp_path):
    files = _write_run(tmp_path, tr_sidecar=None, tr_header=2000.0)
    img = nib.load(files.bold)
    img.header.set_xyzt_units("mm", "msec")
    nib.save(img, files.bold)
    assert fb.load_bold(files).tr == pytest.approx(2.0)


def test_missing_or_unreadable_tr_is_refused(tmp_path):
    files = _write_run(tmp_path, tr_sidecar=None, tr_header=0.0)
    _refused(files, "no repetition time")
    files.sidecar_path().write_text("{not json")
    assert str(_refused(files, "JSON").path).endswith(".json")
    files.sidecar_path().write_text(json.dumps({"RepetitionTime": "2s"}))
    _refused(files, "not a number")
    files.sidecar_path().write_text(json.dumps({"RepetitionTime": 2000}))
    _refused(files, "unit error")


def test_a_3d_image_is_refused(tmp_path):
    files = _write_run(tmp_path, data=np.ones(SHAPE, np.float32))
    _refused(files, "4-D BOLD run")


def test_too_few_volumes_for_the_band_are_refused(tmp_path):
    files = _write_run(tmp_path, n=60)
    fb.load_bold(files)  # 60 volumes at 2 s resolve 0.01 Hz
    _refused(files, "at least 50 volumes", drop_volumes=11)


def test_a_mask_on_another_grid_is_refused(tmp_path):
    files = _write_run(tmp_path)
    nib.save(nib.Nifti1Image(np.ones((12, 14, 11), np.uint8), AFFINE), files.mask)
    error = _refused(files, "does not match")
    assert error.path == str(files.mask)


@pytest.mark.parametrize("bad", ["nan", "constant"])
def test_nan_or_constant_voxels_in_the_mask_are_refused(tmp_path, bad):
    data = 500 + np.random.default_rng(1).standard_normal(SHAPE + (120,)).astype(np.float32)
    if bad == "nan":
        data[5, 5, 5, 7] = np.nan
        data[0, 0, 0, :] = np.nan  # outside the mask: allowed
    else:
        data[5, 6, 5] = 0.0
    _refused(_write_run(tmp_path, data=data), "NaN" if bad == "nan" else "constant")


def test_a_run_in_another_space_is_refused(tmp_path):
    files = _write_run(tmp_path, name="sub-01_task-rest_space-T1w_desc-preproc_bold.nii.gz")
    _refused(files, "space T1w")


def test_confounds_are_read_checked_and_na_filled(tmp_path):
    files = _write_run(tmp_path)
    path = tmp_path / "confounds.tsv"
    pd.DataFrame({"csf": np.arange(120.0), "trans_x_derivative1": [np.nan] + [1.0] * 119}).to_csv(
        path, sep="\t", index=False, na_rep="n/a")
    files = fb.BoldFiles(**{**files.__dict__, "confounds": path})
    got = fb.read_confounds(files, ("csf", "trans_x_derivative1"), 120)
    assert got.shape == (120, 2) and np.isfinite(got).all() and got[0, 1] == 1.0
    with pytest.raises(InputError, match="lacks the column"):
        fb.read_confounds(files, ("white_matter",), 120)
    with pytest.raises(InputError, match="120 rows for 100 volumes"):
        fb.read_confounds(files, ("csf",), 100)


def test_cleaning_drops_regresses_band_passes_and_resamples(tmp_path):
    rng = np.random.default_rng(2)
    n = 130
    t = np.arange(n) * TR
    drift = np.sin(2 * np.pi * 0.2 * t)  # above the band
    nuisance = rng.standard_normal(n)
    data = 500 + 0.3 * rng.standard_normal(SHAPE + (n,)) + 2 * nuisance + 3 * drift
    run = fb.load_bold(_write_run(tmp_path, data=data.astype(np.float32)))
    grid = fb.Grid(shape=(8, 9, 8), affine=np.array([[4.0, 0, 0, -14], [0, 4.0, 0, -16], [0, 0, 4.0, -14], [0, 0, 0, 1]]))
    cleaning = fb.Cleaning(drop_volumes=10, band_pass=True, grid=grid)
    out = fb.clean_bold(run, cleaning, confounds=nuisance[:, None])
    series = out.series()
    assert out.img.shape == (8, 9, 8, n - 10) and out.mask.shape == (8, 9, 8)
    assert np.abs(series.mean(axis=1)).max() < 0.1  # the baseline of 500 is gone (detrended)
    nuisance_left = [abs(np.corrcoef(row, nuisance[10:])[0, 1]) for row in series]
    assert np.mean(nuisance_left) < 0.1  # the regressed confound is gone (it had sd 2, the noise 0.3)
    freqs, amp = amplitude_spectrum(series, TR)
    fast = np.argmin(np.abs(freqs - 0.2))
    assert amp[:, fast].mean() < 0.2 * 3 / np.sqrt(2)  # the 0.2 Hz drift (amplitude 3) is filtered out


def _toy_atlas():
    labels = np.zeros(SHAPE, np.int16)
    labels[2:6, 2:-2, 2:-2], labels[6:10, 2:-2, 2:-2] = 1, 2
    return LabelAtlas(image=nib.Nifti1Image(labels, AFFINE), ids=(1, 2), names=("Left_thing", "Right_thing"))


def test_compute_indicators_gives_every_map_normalised_and_finite(tmp_path):
    files = _write_run(tmp_path, n=120)
    result = compute_indicators(files, IndicatorSettings(grid=None, drop_volumes=4), atlas=_toy_atlas())
    mask = _mask() > 0
    assert set(result.maps) == {"alff", "malff", "falff", "reho", "rfcs"}
    for name, img in result.maps.items():
        data = np.asarray(img.dataobj)
        assert data.shape == SHAPE and np.isfinite(data).all(), name
        assert (data[~mask] == 0).all(), name
    assert np.asarray(result.maps["malff"].dataobj)[mask].mean() == pytest.approx(1.0)
    assert np.asarray(result.maps["reho"].dataobj)[mask].mean() == pytest.approx(1.0)
    assert result.rfcs.strength.shape == (2,)


def test_compute_indicators_names_the_subject_when_a_region_is_outside_the_mask(tmp_path):
    files = _write_run(tmp_path)
    atlas = _toy_atlas()
    labels = atlas.labels()
    labels[0, 0, 0] = 3  # a region with its only voxel outside the mask
    atlas = LabelAtlas(image=nib.Nifti1Image(labels.astype(np.int16), AFFINE), ids=(1, 2, 3), names=("a", "b", "Lost"))
    with pytest.raises(InputError, match="Lost") as info:
        compute_indicators(files, IndicatorSettings(grid=None), atlas=atlas)
    assert info.value.subject == "sub-01"
