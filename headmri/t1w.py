"""Loading a T1-weighted image and checking that it can be a head.

``check_header`` is cheap (header only) and runs for every image when the workflow plans, to warn of
header problems. ``load_t1w`` reads the voxels too; it runs in each image's input check
(``headmri.inputs.check_image``, before any heavy job) and again at the start of brain extraction.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import nibabel as nib
import numpy as np

from headmri.errors import InputError

# A human head, with margin: voxels from 0.2 mm (ultra-high field) to 4 mm (old clinical scans), and a
# field of view per axis from 100 mm (tight) to 400 mm (neck included).
VOXEL_MM_RANGE = (0.2, 4.0)
FOV_MM_RANGE = (100.0, 400.0)


@dataclass(frozen=True)
class HeaderFacts:
    shape: tuple[int, int, int]
    voxel_mm: tuple[float, float, float]
    orientation: str  # e.g. "RAS", "LPS", "LIA"
    oblique: bool


def _load_image(path: str | os.PathLike, subject: str | None) -> nib.spatialimages.SpatialImage:
    if not os.path.exists(path):
        raise InputError("the image does not exist", subject=subject, path=path)
    try:
        return nib.load(path)
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise InputError(f"cannot be read as NIfTI ({exc})", subject=subject, path=path) from exc


def _spatial_shape(img, subject, path) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in img.shape)
    # A trailing singleton dimension (x, y, z, 1) is a 3D image stored as 4D: common and harmless.
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise InputError(
            f"is {len(shape)}D with shape {tuple(img.shape)}; a 3D T1-weighted volume is expected",
            subject=subject,
            path=path,
        )
    return shape  # type: ignore[return-value]


def check_header(path: str | os.PathLike, subject: str | None = None) -> HeaderFacts:
    """Check dimensions, voxel size and field of view from the header alone."""
    img = _load_image(path, subject)
    shape = _spatial_shape(img, subject, path)
    affine = img.affine
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise InputError("has a singular or non-finite affine (no usable orientation)", subject=subject, path=path)
    voxel = tuple(float(v) for v in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))
    lo, hi = VOXEL_MM_RANGE
    if any(v < lo or v > hi for v in voxel):
        raise InputError(
            f"voxel size {tuple(round(v, 3) for v in voxel)} mm is outside {lo}-{hi} mm: not a head T1w",
            subject=subject,
            path=path,
        )
    fov = tuple(n * v for n, v in zip(shape, voxel))
    lo, hi = FOV_MM_RANGE
    if any(f < lo or f > hi for f in fov):
        raise InputError(
            f"field of view {tuple(round(f) for f in fov)} mm is outside {lo:.0f}-{hi:.0f} mm per axis: "
            "cannot hold a whole head",
            subject=subject,
            path=path,
        )
    orientation = "".join(nib.aff2axcodes(affine))
    cosines = affine[:3, :3] / np.asarray(voxel)
    oblique = bool(np.abs(np.abs(cosines).max(axis=0) - 1).max() > 1e-3)
    return HeaderFacts(shape=shape, voxel_mm=voxel, orientation=orientation, oblique=oblique)  # type: ignore[arg-type]


def load_t1w(path: str | os.PathLike, subject: str | None = None) -> nib.Nifti1Image:
    """Load a 3D T1w image as float32, checking header and voxels; raise InputError on anything wrong."""
    check_header(path, subject)
    img = _load_image(path, subject)
    try:
        data = np.asanyarray(img.dataobj, dtype=np.float32)
    except Exception as exc:  # truncated gzip, short file, bad dtype
        raise InputError(f"is truncated or corrupt: its voxels cannot be read ({exc})", subject=subject, path=path) from exc
    data = data.reshape(data.shape[:3])
    bad = ~np.isfinite(data)
    if bad.any():
        raise InputError(f"has {int(bad.sum())} NaN or infinite voxels", subject=subject, path=path)
    if not np.any(data):
        raise InputError("is all zeros", subject=subject, path=path)
    if float(data.max()) == float(data.min()):
        raise InputError("has the same value in every voxel", subject=subject, path=path)
    header = img.header.copy()
    header.set_data_dtype(np.float32)
    out = nib.Nifti1Image(data, img.affine, header)
    return out
