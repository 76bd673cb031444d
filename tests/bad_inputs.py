"""Bad T1w images made from a good one, one per problem the input checks must catch (issue 16)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np


def _save(data: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def truncated(data, affine, path: Path) -> Path:
    """A .nii.gz cut off half-way (a copy that stopped): the header reads, the voxels do not."""
    _save(data, affine, path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return path


def all_nan(data, affine, path):
    return _save(np.full(data.shape, np.nan, np.float32), affine, path)


def part_nan(data, affine, path):
    bad = data.astype(np.float32).copy()
    bad[: bad.shape[0] // 4] = np.nan
    return _save(bad, affine, path)


def infinite(data, affine, path):
    bad = data.astype(np.float32).copy()
    bad[tuple(s // 2 for s in bad.shape)] = np.inf
    return _save(bad, affine, path)


def all_zero(data, affine, path):
    return _save(np.zeros(data.shape, np.float32), affine, path)


def four_d(data, affine, path):
    return _save(np.stack([data, data], axis=-1).astype(np.float32), affine, path)


def voxels_5mm(data, affine, path):
    return _save(data.astype(np.float32), np.diag([5.0, 5.0, 5.0, 1.0]), path)


def small_fov(data, affine, path):
    return _save(data[:20, :20, :20].astype(np.float32), np.diag([1.0, 1.0, 1.0, 1.0]), path)


# kind -> (maker, words the problem must contain)
BAD = {
    "truncated": (truncated, "truncated"),
    "all_nan": (all_nan, "NaN"),
    "part_nan": (part_nan, "NaN"),
    "infinite": (infinite, "infinite"),
    "all_zero": (all_zero, "all zeros"),
    "four_d": (four_d, "4D"),
    "voxels_5mm": (voxels_5mm, "voxel size"),
    "small_fov": (small_fov, "field of view"),
}


def make_bad(kind: str, data: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    return BAD[kind][0](data, affine, path)
