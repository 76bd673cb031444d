"""Regional activation: max/mean per region, parcellation checks, and the slice -> voxel -> region path."""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from headmri.errors import InputError
from headmri.explain import regions
from headmri.slices.geometry import SliceGeometry

CODES = [17, 1022, 2022, 3022]  # Left-Hippocampus, ctx-lh/rh-postcentral, wm-lh-postcentral


def _labels(shape=(12, 14, 10), seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.choice([0, *CODES], size=shape, p=[0.4, 0.15, 0.15, 0.15, 0.15]).astype(np.int32)
    volume = rng.random(shape).astype(np.float32)
    return volume, labels


@pytest.mark.parametrize("statistic, reduce", [("max", np.max), ("mean", np.mean)])
def test_regional_values_equal_a_direct_numpy_computation(statistic, reduce):
    volume, labels = _labels()
    got = regions.regional_values(volume, labels, CODES, statistic)
    expected = [reduce(volume[labels == code]) for code in CODES]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize("statistic", ["max", "mean"])
def test_regional_values_are_those_of_scipy_ndimage_to_the_bit(statistic):
    """The one-pass version gives what the former ndimage.maximum/mean over the labelled voxels gave."""
    from scipy import ndimage

    volume, labels = _labels(shape=(30, 34, 28), seed=3)
    labels[labels == 2022] = 4022  # a region no code asks for, and a code with no voxels
    codes = [*CODES, 5002]
    got = regions.regional_values(volume, labels, codes, statistic)
    inside = labels > 0
    reduce = ndimage.maximum if statistic == "max" else ndimage.mean
    with np.errstate(invalid="ignore", divide="ignore"):
        former = np.asarray(reduce(volume.astype(np.float64)[inside], labels=labels[inside].astype(np.int64),
                                   index=np.asarray(codes)), dtype=np.float64)
    former[[2, 4]] = np.nan  # the former code set absent regions to NaN the same way
    np.testing.assert_array_equal(got, former)


def test_an_absent_region_gives_nan_not_zero():
    volume, labels = _labels()
    labels[labels == 17] = 0
    got = regions.regional_values(volume, labels, CODES, "max")
    assert np.isnan(got[0]) and np.isfinite(got[1:]).all()


def test_present_codes_and_region_rows():
    _, labels = _labels()
    assert regions.present_codes(labels).tolist() == CODES
    rows = regions.region_rows(np.array([1.0, 2.0, 3.0, 4.0]), CODES)
    assert rows["region"].tolist() == ["Left-Hippocampus", "ctx-lh-postcentral", "ctx-rh-postcentral", "wm-lh-postcentral"]


def test_a_parcellation_missing_an_expected_region_is_an_error():
    with pytest.raises(InputError, match="sub-07.*dseg.nii.gz.*lacks 1 region.*ctx-rh-postcentral"):
        regions.check_codes([17, 1022, 3022], CODES, subject="sub-07", path="dseg.nii.gz")
    with pytest.raises(InputError, match="not in the label table .*freesurfer_lut.tsv.*: \\[9999\\]"):
        regions.check_codes([*CODES, 9999], CODES, subject="sub-07", path="dseg.nii.gz")
    regions.check_codes(CODES, CODES, subject="sub-07", path="dseg.nii.gz")  # complete: no error


def test_expected_regions_from_a_table_or_from_the_subjects(tmp_path):
    table = tmp_path / "atlas.tsv"
    # the atlas table may list excluded structures (4: lateral ventricle); they are never scored
    pd.DataFrame({"label": [4, 17, 1022], "name": ["Left-Lateral-Ventricle", "Left-Hippocampus", "ctx-lh-postcentral"]}).to_csv(table, sep="\t", index=False)
    assert regions.expected_codes_from_table(table) == [17, 1022]
    # optional FreeSurfer labels (77 WM-hypointensities) are not required of every subject
    assert regions.expected_codes_from_subjects([[17, 77, 4], [1022]]) == [17, 1022]
    bad = tmp_path / "bad.tsv"
    pd.DataFrame({"code": [1]}).to_csv(bad, sep="\t", index=False)
    with pytest.raises(InputError, match="no 'label' column"):
        regions.expected_codes_from_table(bad)


def test_a_parcellation_on_another_grid_is_an_error():
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    image = nib.Nifti1Image(np.zeros((12, 14, 10), np.int16), affine)
    regions.check_same_grid(image, (12, 14, 10), affine, subject="sub-01", path="d.nii.gz", what="slice geometry's")
    with pytest.raises(InputError, match="sub-01.*d.nii.gz.*grid \\(12, 14, 10\\) does not match .*\\(12, 14, 11\\)"):
        regions.check_same_grid(image, (12, 14, 11), affine, subject="sub-01", path="d.nii.gz", what="slice geometry's")
    shifted = affine.copy()
    shifted[0, 3] = 2.0
    with pytest.raises(InputError, match="affine does not match"):
        regions.check_same_grid(image, (12, 14, 10), shifted, subject="sub-01", path="d.nii.gz", what="slice geometry's")


@pytest.mark.parametrize("size", [24, 40])  # 24: the padded square itself (no resize); 40: resized
def test_one_hot_slice_pixel_lands_in_its_voxel_and_its_region(size):
    shape = (20, 24, 18)  # sagittal slices: 18 x 24 images, padded to 24 x 24
    affine = np.array([[1.0, 0, 0, -10], [0, 1, 0, -12], [0, 0, 1, -9], [0, 0, 0, 1]])
    geometry = SliceGeometry.create(axis=0, size=size, source_shape=shape, source_affine=affine, kept_indices=range(2, 18))
    voxel = (7, 15, 4)
    slice_pos, row, col = geometry.voxel_to_pixel(*voxel)
    maps = np.zeros((geometry.n_kept, size, size), np.float32)
    maps[slice_pos, int(round(row)), int(round(col))] = 1.0
    volume = geometry.to_volume(maps)
    assert volume.shape == shape
    assert np.unravel_index(volume.argmax(), shape) == voxel
    if size == geometry.padded:  # no resampling: exactly that voxel and nothing else
        assert volume[voxel] == 1.0 and np.count_nonzero(volume) == 1
    # the region holding the voxel gets the map's maximum; a region away from it gets nothing
    labels = np.full(shape, 1022, np.int32)
    labels[voxel] = 17
    labels[:, :, 12:] = 2022
    values = regions.regional_values(volume, labels, [17, 1022, 2022], "max")
    assert values[0] == pytest.approx(volume.max()) and values[0] >= values[1] and values[2] == 0.0
