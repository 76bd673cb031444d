"""ALFF, fALFF, mALFF, ReHo and RFCS against references written here, on small synthetic runs."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy.signal import periodogram
from scipy.stats import rankdata

from headmri.fmri import alff, reho, rfcs
from headmri.fmri.atlas import LabelAtlas, aal116, paint
from headmri.parcellation.embedded_atlas import aal_atlas_files

TR = 2.0


def _noise(rng, shape, n=120):
    return rng.standard_normal(shape + (n,))


# ---------------------------------------------------------------- ALFF / fALFF / mALFF

def _reference_amplitude(x, tr):
    freqs, power = periodogram(x, fs=1 / tr, detrend=False, scaling="spectrum", window="boxcar", axis=-1)
    return freqs, np.sqrt(power)


def test_alff_and_falff_equal_a_scipy_periodogram_reference():
    rng = np.random.default_rng(0)
    for n in (120, 121):  # even and odd lengths (the Nyquist bin exists only for even n)
        x = _noise(rng, (50,), n) + 100
        freqs, amp = _reference_amplitude(x - x.mean(axis=1, keepdims=True), TR)
        band = (freqs >= 0.01) & (freqs <= 0.08)
        np.testing.assert_allclose(alff.alff(x, TR), amp[:, band].mean(axis=1), rtol=1e-10)
        np.testing.assert_allclose(alff.falff(x, TR), amp[:, band].sum(axis=1) / amp[:, 1:].sum(axis=1), rtol=1e-10)


def test_malff_is_alff_over_its_mean():
    values = np.array([1.0, 2.0, 3.0, 6.0])
    np.testing.assert_allclose(alff.malff(values), values / 3.0)
    with pytest.raises(ValueError):
        alff.malff(np.zeros(3))


def test_extra_power_at_005_hz_raises_alff_and_falff_of_that_voxel_only():
    rng = np.random.default_rng(1)
    x = _noise(rng, (20,), 150)
    t = np.arange(150) * TR
    boosted = x.copy()
    boosted[7] += 1.5 * np.sin(2 * np.pi * 0.05 * t)
    a, b = alff.alff(x, TR), alff.alff(boosted, TR)
    assert b[7] > a[7] + 0.03  # one of ~21 band bins gains about 1.5 / sqrt(2)
    np.testing.assert_allclose(np.delete(b, 7), np.delete(a, 7))
    assert alff.falff(boosted, TR)[7] > alff.falff(x, TR)[7]


def test_power_outside_the_band_leaves_alff_alone_but_lowers_falff():
    rng = np.random.default_rng(2)
    x = _noise(rng, (5,), 150)
    t = np.arange(150) * TR
    fast = x + 3 * np.sin(2 * np.pi * 0.2 * t)
    np.testing.assert_allclose(alff.alff(fast, TR), alff.alff(x, TR), rtol=1e-6, atol=1e-9)
    assert (alff.falff(fast, TR) < alff.falff(x, TR)).all()


@pytest.mark.parametrize("bad", ["constant", "nan"])
def test_constant_or_nan_series_are_refused_not_nan(bad):
    x = _noise(np.random.default_rng(3), (4,), 120)
    x[2] = 5.0 if bad == "constant" else x[2]
    if bad == "nan":
        x[2, 10] = np.nan
    with pytest.raises(ValueError, match="constant" if bad == "constant" else "NaN"):
        alff.falff(x, TR)


def test_band_problem_names_too_short_runs_and_too_slow_sampling():
    assert alff.band_problem(50, 2.0) is None
    assert "at least 50 volumes" in alff.band_problem(49, 2.0)
    assert "samples up to" in alff.band_problem(200, 7.0)


# ---------------------------------------------------------------- ReHo

def _textbook_w(block: np.ndarray) -> float:
    """Kendall's W of m raters (rows) over n objects (columns), with the tie correction."""
    m, n = block.shape
    ranks = np.array([rankdata(row) for row in block])
    totals = ranks.sum(axis=0)
    ties = 0.0
    for row in block:
        _, counts = np.unique(row, return_counts=True)
        ties += float(np.sum(counts ** 3 - counts))
    return (12 * np.sum(totals ** 2) - 3 * m ** 2 * n * (n + 1) ** 2) / (m ** 2 * (n ** 3 - n) - m * ties)


def _mask(shape):
    mask = np.zeros(shape, bool)
    mask[1:-1, 2:-1, 1:-2] = True
    mask[3, 4, 5] = False  # a hole: its neighbours have fewer than 27 voxels
    return mask


@pytest.mark.parametrize("size", [7, 19, 27])
def test_reho_equals_textbook_kendall_w_with_ties(size):
    rng = np.random.default_rng(4)
    shape = (8, 9, 8)
    shared = rng.standard_normal(40)
    data = np.round(rng.standard_normal(shape + (40,)) + 0.8 * shared, 0)  # rounding makes many ties
    mask = _mask(shape)
    got = reho.kendall_w(data, mask, size)
    offsets = reho.neighbourhood_offsets(size)
    assert len(offsets) == size
    for voxel in map(tuple, np.argwhere(mask)):
        neighbours = [tuple(np.add(voxel, o)) for o in offsets]
        inside = [v for v in neighbours if all(0 <= c < s for c, s in zip(v, shape)) and mask[v]]
        expected = _textbook_w(np.array([data[v] for v in inside]))
        assert got[voxel] == pytest.approx(expected, rel=1e-6, abs=1e-9), voxel
    assert (got[~mask] == 0).all()


def test_reho_is_higher_where_neighbours_share_a_signal():
    rng = np.random.default_rng(5)
    data = rng.standard_normal((10, 10, 10, 60))
    data[2:6, 2:6, 2:6] += 2 * rng.standard_normal(60)
    w = reho.kendall_w(data, np.ones((10, 10, 10), bool))
    assert w[3:5, 3:5, 3:5].min() > np.percentile(w[7:, 7:, 7:], 99)


def test_reho_refuses_a_constant_voxel():
    data = np.random.default_rng(6).standard_normal((5, 5, 5, 30))
    data[2, 2, 2] = 1.0
    with pytest.raises(ValueError, match="constant"):
        reho.kendall_w(data, np.ones((5, 5, 5), bool))


def test_tie_term_counts_t_cubed_minus_t_per_group():
    rows = np.array([[1, 2, 3, 4], [1, 1, 2, 2], [5, 5, 5, 1]], float)
    np.testing.assert_array_equal(reho.tie_term(rows), [0, 12, 24])


# ---------------------------------------------------------------- RFCS

def test_strength_is_the_mean_absolute_off_diagonal_correlation():
    rng = np.random.default_rng(7)
    series = rng.standard_normal((100, 6))
    s, _ = rfcs.strength(series)
    for i in range(6):
        others = [abs(np.corrcoef(series[:, i], series[:, j])[0, 1]) for j in range(6) if j != i]
        assert s[i] == pytest.approx(np.mean(others))
    series[:, 3] = 2.0
    with pytest.raises(ValueError, match="constant"):
        rfcs.strength(series)


def _toy_atlas(shape, affine):
    labels = np.zeros(shape, np.int16)
    labels[:4], labels[4:8], labels[8:] = 1, 2, 3
    labels[:, :, -1] = 0
    return LabelAtlas(image=nib.Nifti1Image(labels, affine), ids=(1, 2, 3), names=("A", "B", "C"))


def test_a_region_given_extra_shared_signal_gets_a_higher_rfcs():
    rng = np.random.default_rng(8)
    shape, n = (12, 6, 5), 120
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    atlas = _toy_atlas(shape, affine)
    common = rng.standard_normal(n)
    data = rng.standard_normal(shape + (n,)) + 0.3 * common
    labels = atlas.labels()
    for region in atlas.ids:  # each region's own signal keeps the regions apart to begin with
        data[labels == region] += rng.standard_normal(n)
    mask = nib.Nifti1Image(np.ones(shape, np.uint8), affine)
    before = rfcs.rfcs(nib.Nifti1Image(data, affine), mask, atlas)
    data[labels == 2] += 1.5 * common  # region B follows the shared signal more
    after = rfcs.rfcs(nib.Nifti1Image(data, affine), mask, atlas)
    assert after.strength[1] > before.strength[1] + 0.1
    assert np.argmax(after.strength) == 1
    painted = np.asarray(after.image().dataobj)
    assert painted[5, 0, 0] == pytest.approx(after.strength[1])
    assert painted[0, 0, -1] == 0


def test_rfcs_names_regions_outside_the_mask():
    shape, affine = (12, 6, 5), np.diag([3.0, 3.0, 3.0, 1.0])
    data = np.random.default_rng(9).standard_normal(shape + (60,))
    mask = np.ones(shape, np.uint8)
    mask[8:] = 0
    with pytest.raises(ValueError, match="'C'"):
        rfcs.rfcs(nib.Nifti1Image(data, affine), nib.Nifti1Image(mask, affine), _toy_atlas(shape, affine))


def test_aal116_has_its_regions_on_the_right_side():
    atlas = aal116()
    assert len(atlas.ids) == 116 and atlas.names[0] == "Precentral_L" and atlas.names[-1] == "Vermis_10"
    labels = atlas.labels()
    for name in ("Precentral_L", "Precentral_R"):
        centre = np.argwhere(labels == atlas.ids[atlas.names.index(name)]).mean(axis=0)
        x = nib.affines.apply_affine(atlas.image.affine, centre)[0]
        assert (x < -20) if name.endswith("_L") else (x > 20)


def test_aal_files_are_found_by_version_with_aal3_the_default():
    assert aal_atlas_files().image.name == "AAL3.nii"  # what the embedded atlas has always used
    assert aal_atlas_files("AAL").table.name == "AAL.txt"
    with pytest.raises(ValueError, match="version"):
        aal_atlas_files("AAL2")


def test_paint_puts_each_value_on_its_region():
    atlas = _toy_atlas((12, 6, 5), np.eye(4))
    img = paint(np.array([1.0, 2.0, 3.0]), atlas)
    data = np.asarray(img.dataobj)
    assert data[0, 0, 0] == 1 and data[5, 0, 0] == 2 and data[9, 0, 0] == 3 and data[0, 0, 4] == 0
