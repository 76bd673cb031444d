"""Every bad T1w input is refused with an error naming the subject and the file; odd but valid
orientations (oblique, LIA, LPS) are accepted and keep their geometry."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from headmri.errors import InputError
from headmri.t1w import check_header, load_t1w

from conftest import grid_affine

SUBJECT = "sub-07"
SHAPE = (64, 72, 64)  # 2 mm voxels: 128 x 144 x 128 mm, a plausible head field of view


def _head(shape=SHAPE):
    rng = np.random.default_rng(1)
    return (rng.uniform(0, 100, shape)).astype(np.float32)


def _assert_names_subject_and_file(exc: InputError, path, words: str):
    message = str(exc)
    assert SUBJECT in message and str(path) in message, message
    assert exc.subject == SUBJECT and exc.path == str(path)
    assert words in message, message


def test_valid_oblique_lia_image_loads_as_float32_with_its_own_geometry(write_nifti):
    affine = grid_affine(SHAPE, 2.0, "LIA", oblique_deg=(10, -4, 7))
    path = write_nifti("t1w.nii.gz", _head().astype(np.int16), affine)
    facts = check_header(path, subject=SUBJECT)
    assert facts.orientation == "LIA" and facts.oblique and facts.shape == SHAPE
    assert np.allclose(facts.voxel_mm, 2.0)
    img = load_t1w(path, subject=SUBJECT)
    assert img.get_data_dtype() == np.float32 and np.allclose(img.affine, affine)


def test_lps_image_is_valid_and_not_oblique(write_nifti):
    path = write_nifti("t1w.nii", _head(), grid_affine(SHAPE, 2.0, "LPS"))
    facts = check_header(path, subject=SUBJECT)
    assert facts.orientation == "LPS" and not facts.oblique


def test_trailing_singleton_fourth_dimension_is_a_3d_image(write_nifti):
    path = write_nifti("t1w.nii.gz", _head()[..., None], grid_affine(SHAPE, 2.0))
    assert load_t1w(path, subject=SUBJECT).shape == SHAPE


def test_missing_file(tmp_path):
    path = tmp_path / "nothing.nii.gz"
    with pytest.raises(InputError) as info:
        load_t1w(path, subject=SUBJECT)
    _assert_names_subject_and_file(info.value, path, "does not exist")


def test_unreadable_file(tmp_path):
    path = tmp_path / "garbage.nii.gz"
    path.write_bytes(gzip.compress(b"this is not a NIfTI header" * 20))
    with pytest.raises(InputError) as info:
        load_t1w(path, subject=SUBJECT)
    _assert_names_subject_and_file(info.value, path, "cannot be read")


def test_truncated_gzip_is_refused_when_voxels_are_read(write_nifti):
    path = write_nifti("t1w.nii.gz", _head(), grid_affine(SHAPE, 2.0))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])  # header intact, voxels cut off
    check_header(path, subject=SUBJECT)  # the header alone still looks fine
    with pytest.raises(InputError) as info:
        load_t1w(path, subject=SUBJECT)
    _assert_names_subject_and_file(info.value, path, "truncated or corrupt")


@pytest.mark.parametrize(
    "shape, words",
    [((64, 72, 64, 3), "4D"), ((64, 72), "2D")],
    ids=["4D", "2D"],
)
def test_wrong_dimensionality(write_nifti, shape, words):
    path = write_nifti("t1w.nii.gz", np.ones(shape, np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
    with pytest.raises(InputError) as info:
        load_t1w(path, subject=SUBJECT)
    _assert_names_subject_and_file(info.value, path, words)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_voxels(write_nifti, bad_value):
    data = _head()
    data[10, 20, 30] = bad_value
    data[11, 20, 30] = bad_value
    path = write_nifti("t1w.nii.gz", data, grid_affine(SHAPE, 2.0))
    with pytest.raises(InputError) as info:
        load_t1w(path, subject=SUBJECT)
    _assert_names_subject_and_file(info.value, path, "2 NaN or infinite voxels")


def test_all_zero_image(write_nifti):
    path = write_nifti("t1w.nii.gz", np.zeros(SHAPE, np.int16), grid_affine(SHAPE, 2.0))
    with pytest.raises(InputError) as info:
        load_t1w(path, subject=SUBJECT)
    _assert_names_subject_and_file(info.value, path, "all zeros")


def test_constant_image(write_nifti):
    path = write_nifti("t1w.nii.gz", np.full(SHAPE, 5, np.int16), grid_affine(SHAPE, 2.0))
    with pytest.raises(InputError) as info:
        load_t1w(path, subject=SUBJECT)
    _assert_names_subject_and_file(info.value, path, "same value in every voxel")


@pytest.mark.parametrize(
    "shape, voxel, words",
    [
        ((20, 22, 20), 8.0, "voxel size"),  # 8 mm voxels: a toy, not a T1w
        ((600, 700, 600), 0.05, "voxel size"),  # 0.05 mm: a microscope
        ((30, 36, 30), 1.0, "field of view"),  # 30 mm across: smaller than any head
        ((250, 250, 250), 2.0, "field of view"),  # 500 mm across: a whole body
    ],
    ids=["voxels-too-big", "voxels-too-small", "fov-too-small", "fov-too-big"],
)
def test_impossible_voxel_size_or_field_of_view_is_refused_from_the_header(tmp_path, shape, voxel, words):
    # Header only: the refusal must not need the voxels (it runs for every subject before any job).
    path = tmp_path / "t1w.nii.gz"
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.uint8)
    img = nib.Nifti1Image(np.zeros((1, 1, 1), np.uint8), np.diag([voxel, voxel, voxel, 1.0]))
    img.header.set_data_shape(shape)
    img.header.set_zooms((voxel,) * 3)
    with open(path, "wb") as handle:  # a header whose voxel block is missing: check_header must not care
        handle.write(gzip.compress(img.header.binaryblock + b"\x00" * 4))
    with pytest.raises(InputError) as info:
        check_header(path, subject=SUBJECT)
    _assert_names_subject_and_file(info.value, path, words)


def test_singular_affine(tmp_path):
    affine = grid_affine(SHAPE, 2.0)
    affine[:3, 2] = 0  # the third axis collapses: no orientation
    header = nib.Nifti1Header()
    header.set_data_shape(SHAPE)
    header.set_data_dtype(np.float32)
    header.set_sform(affine, code=1)  # qform code stays 0: the sform is all there is
    path = tmp_path / "t1w.nii.gz"
    nib.save(nib.Nifti1Image(_head(), None, header), path)
    with pytest.raises(InputError) as info:
        check_header(path, subject=SUBJECT)
    _assert_names_subject_and_file(info.value, path, "singular")
