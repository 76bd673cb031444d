"""What every registration backend shares: input checks, the skull-stripped template, and the atomic
writing of the four outputs (MNI brain, MNI mask, the backend's transform, the RAS world affine)."""

from __future__ import annotations

import contextlib
import os
import shutil

import nibabel as nib
import numpy as np

from headmri.atomic import atomic_path, with_units
from headmri.errors import ConfigError, InputError


def load_brain_and_mask(brain, mask, subject: str) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    """The native-space brain and mask as float32 images in memory, checked to share one grid."""
    brain_img, mask_img = _load(brain, subject), _load(mask, subject)
    if brain_img.shape != mask_img.shape or not np.allclose(brain_img.affine, mask_img.affine, atol=1e-4):
        raise InputError(f"the brain mask {mask} is not on the grid of the brain image", subject=subject, path=brain)
    if not np.any(mask_img.get_fdata() > 0):
        raise InputError("the brain mask is empty", subject=subject, path=mask)
    return brain_img, mask_img


def _load(path, subject) -> nib.Nifti1Image:
    try:
        img = nib.load(path)
        data = np.asanyarray(img.dataobj, dtype=np.float32)
    except Exception as exc:
        raise InputError(f"cannot be read as NIfTI ({exc})", subject=subject, path=path) from exc
    header = img.header.copy()
    header.set_data_dtype(np.float32)
    # units set: antspyx, which registers these, prints a warning for every image with unknown units
    return with_units(nib.Nifti1Image(data.reshape(data.shape[:3]), img.affine, header))


def skull_stripped_template(template_brain, template_mask) -> nib.Nifti1Image:
    """The template T1w times its brain mask, as float32 on the template's own grid (so a whole-head
    template with its mask serves as well as a skull-stripped one)."""
    head = nib.load(template_brain)
    brain_mask = nib.load(template_mask)
    if head.shape[:3] != brain_mask.shape[:3] or not np.allclose(head.affine, brain_mask.affine, atol=1e-4):
        raise ConfigError(f"template mask {template_mask} is not on the grid of {template_brain}")
    data = head.get_fdata(dtype=np.float32) * (np.asanyarray(brain_mask.dataobj) > 0)
    header = head.header.copy()
    header.set_data_dtype(np.float32)
    return with_units(nib.Nifti1Image(data, head.affine, header))  # nimare's template: time units unknown


def crop_to_mask(img: nib.Nifti1Image, mask: nib.Nifti1Image, margin: int = 10) -> nib.Nifti1Image:
    """The image cut to the bounding box of the mask's non-zero voxels plus a margin (same world grid)."""
    inside = np.argwhere(np.asanyarray(mask.dataobj) > 0)
    if not len(inside):
        return img
    lo = np.maximum(inside.min(axis=0) - margin, 0)
    hi = np.minimum(inside.max(axis=0) + margin + 1, img.shape[:3])
    return img.slicer[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]


def as_ras(img: nib.Nifti1Image) -> nib.Nifti1Image:
    """Store in RAS voxel order: a lossless flip/permutation of axes that changes no world coordinate
    (FSL stores its MNI grid radiologically; the pipeline's MNI grid is RAS)."""
    return img if nib.aff2axcodes(img.affine) == ("R", "A", "S") else nib.as_closest_canonical(img)


def _typed(img: nib.Nifti1Image, dtype, binary: bool = False) -> nib.Nifti1Image:
    data = np.asanyarray(img.dataobj)
    data = (data > 0.5) if binary else data
    header = img.header.copy()
    header.set_data_dtype(dtype)
    out = nib.Nifti1Image(data.astype(dtype), img.affine, header)
    out.header.set_slope_inter(1, 0)
    return out


def write_registration(brain_mni: nib.Nifti1Image, mask_mni: nib.Nifti1Image, xfm: str | os.PathLike,
                       affine: np.ndarray, brain_out, mask_out, xfm_out, affine_out) -> None:
    """Write the four registration outputs, all or none: MNI brain (float32) and mask (uint8 0/1) in
    RAS voxel order, a copy of the backend's transform file, and the 4x4 subject->MNI RAS matrix."""
    brain_mni, mask_mni = as_ras(brain_mni), as_ras(mask_mni)
    with contextlib.ExitStack() as stack:
        nib.save(with_units(_typed(brain_mni, np.float32)), stack.enter_context(atomic_path(brain_out)))
        nib.save(with_units(_typed(mask_mni, np.uint8, binary=True)), stack.enter_context(atomic_path(mask_out)))
        shutil.copyfile(xfm, stack.enter_context(atomic_path(xfm_out)))
        np.savetxt(stack.enter_context(atomic_path(affine_out)), np.asarray(affine), fmt="%.10f")
