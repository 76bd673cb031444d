"""headmri.nifti_io.load_nifti reads what nibabel reads, from gzipped and plain files, NIfTI-1 and -2."""

import gzip

import nibabel as nib
import numpy as np
import pytest

from headmri.nifti_io import InflatingNifti, load_nifti


@pytest.mark.parametrize("image_class", [nib.Nifti1Image, nib.Nifti2Image])
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_reads_the_same_image_as_nibabel(tmp_path, image_class, suffix):
    rng = np.random.default_rng(0)
    affine = np.diag([-1.0, 1.2, 0.8, 1.0])
    affine[:3, 3] = [90, -126, -72]
    data = rng.integers(0, 1000, (7, 6, 5)).astype(np.int16)
    image = image_class(data, affine)
    image.header.set_slope_inter(0.5, 3.0)  # scaled data: the reader must apply nibabel's scaling
    path = tmp_path / f"img{suffix}"
    nib.save(image, path)
    ours, theirs = load_nifti(path), nib.load(path)
    assert type(ours) is image_class
    assert np.array_equal(np.asarray(ours.dataobj), np.asarray(theirs.dataobj))
    assert np.allclose(ours.affine, theirs.affine) and ours.header.get_zooms() == theirs.header.get_zooms()
    assert np.allclose(np.asarray(ours.dataobj)[1, 2, 3], data[1, 2, 3] * 0.5 + 3.0)


def test_gzipped_content_that_is_not_nifti_is_an_error(tmp_path):
    path = tmp_path / "notes.nii.gz"
    path.write_bytes(gzip.compress(b"participant_id\tgroup\n" * 40))
    with pytest.raises(ValueError, match="not a NIfTI"):
        load_nifti(path)


def test_a_damaged_gzip_stream_and_a_missing_file_are_errors(tmp_path):
    path = tmp_path / "cut.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), path)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises((EOFError, OSError)):  # truncated stream
        load_nifti(path)
    with pytest.raises(FileNotFoundError):
        load_nifti(tmp_path / "absent.nii.gz")


def test_unscaled_gzipped_data_are_a_read_only_view_of_the_inflated_file(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.normal(size=(6, 5, 4)).astype(">f4")  # big-endian on disk: the view keeps the byte order
    path = tmp_path / "brain.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([-2.0, 2.0, 2.0, 1.0])), path)
    ours, theirs = load_nifti(path), nib.load(path)
    array = np.asarray(ours.dataobj)
    assert isinstance(ours.dataobj, np.ndarray) and not array.flags.writeable
    assert np.array_equal(array, np.asarray(theirs.dataobj)) and np.array_equal(array, data)
    assert ours.header.binaryblock == theirs.header.binaryblock
    assert np.array_equal(ours.affine, theirs.affine)


def test_gzipped_data_shorter_than_the_header_says_are_an_error(tmp_path):
    image = nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4))
    path = tmp_path / "short.nii.gz"
    path.write_bytes(gzip.compress(image.to_bytes()[:-40]))  # a whole gzip stream, but of a cut file
    with pytest.raises(ValueError, match="truncated"):
        load_nifti(path)


@pytest.mark.parametrize("image_class", [nib.Nifti1Image, nib.Nifti2Image])
@pytest.mark.parametrize("shape", [(7, 6, 5), (7, 6, 5, 1)])
def test_inflating_fills_the_array_plane_by_plane_with_what_nibabel_reads(tmp_path, image_class, shape):
    data = np.random.default_rng(2).normal(size=shape).astype(np.float32)
    path = tmp_path / "brain.nii.gz"
    nib.save(image_class(data, np.diag([-2.0, 2.0, 2.0, 1.0])), path)
    inflating = InflatingNifti(path, chunk_bytes=100)  # less than one plane (7 x 6 x 4 bytes) per step
    assert type(inflating.image) is image_class and inflating.image.shape == shape and inflating.n_planes == 5
    done = list(inflating.inflate())
    assert done == sorted(done) and done[-1] == 5 and len(set(done)) == 6  # 0 first, then every plane
    theirs = nib.load(path)
    assert np.array_equal(np.asarray(inflating.image.dataobj), data)
    assert inflating.image.header.binaryblock == theirs.header.binaryblock
    assert np.array_equal(inflating.image.affine, theirs.affine)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_inflating_reads_scaled_or_plain_files_whole(tmp_path, suffix):
    image = nib.Nifti1Image(np.arange(60, dtype=np.int16).reshape(5, 4, 3), np.eye(4))
    if suffix == ".nii.gz":
        image.header.set_slope_inter(0.5, 3.0)
    path = tmp_path / f"img{suffix}"
    nib.save(image, path)
    inflating = InflatingNifti(path, chunk_bytes=8)
    assert list(inflating.inflate()) == [3]
    assert np.array_equal(np.asarray(inflating.image.dataobj), np.asarray(nib.load(path).dataobj))


def test_inflating_a_damaged_file_is_an_error(tmp_path):
    image = nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4))
    path = tmp_path / "short.nii.gz"
    path.write_bytes(gzip.compress(image.to_bytes()[:-40]))
    with pytest.raises(ValueError, match="truncated"):
        list(InflatingNifti(path, chunk_bytes=512).inflate())
    path.write_bytes(gzip.compress(b"participant_id\tgroup\n" * 40))
    with pytest.raises(ValueError, match="not a NIfTI"):
        InflatingNifti(path)
    with pytest.raises(FileNotFoundError):
        InflatingNifti(tmp_path / "absent.nii.gz")
