"""What every brain extraction backend shares: the final checks and the atomic writing of its outputs."""

from __future__ import annotations

import contextlib
import logging
import os

import nibabel as nib
import numpy as np

from headmri.atomic import atomic_path, with_units
from headmri.errors import InputError

log = logging.getLogger(__name__)


def save_together(images: dict) -> None:
    """Write several NIfTI files so that either all appear under their final names or none does."""
    with contextlib.ExitStack() as stack:
        for path, img in images.items():
            nib.save(with_units(img), stack.enter_context(atomic_path(path)))


def on_grid_of(reference: nib.Nifti1Image, data: np.ndarray, dtype) -> nib.Nifti1Image:
    """An image on the reference's grid and header (the subject's native space), with the given type."""
    if data.shape != reference.shape[:3]:
        raise RuntimeError(f"brain extraction changed the grid: {data.shape} != {reference.shape[:3]}")
    header = reference.header.copy()
    header.set_data_dtype(dtype)
    out = nib.Nifti1Image(np.asarray(data).astype(dtype), reference.affine, header)
    out.header.set_slope_inter(1, 0)
    return out


def write_brain_extraction(
    t1w: nib.Nifti1Image,
    brain: nib.Nifti1Image,
    mask: nib.Nifti1Image,
    brain_out: str | os.PathLike,
    mask_out: str | os.PathLike,
    *,
    subject: str,
    t1w_path: str | os.PathLike,
    backend: str,
) -> None:
    """Check a backend's result and write the brain (float32, zero outside the mask) and the mask (uint8
    0/1) on the T1w's own grid, both or neither."""
    mask_data = np.asanyarray(mask.dataobj).reshape(t1w.shape[:3]) > 0
    if not mask_data.any():
        raise InputError(f"brain extraction ({backend}) found no brain in the image", subject=subject, path=t1w_path)
    volume_ml = float(mask_data.sum() * np.prod(t1w.header.get_zooms()[:3]) / 1000.0)
    log.info("%s: brain mask %.0f ml (%s)", subject, volume_ml, backend)
    brain_data = np.asanyarray(brain.dataobj, dtype=np.float32).reshape(t1w.shape[:3]) * mask_data
    save_together({brain_out: on_grid_of(t1w, brain_data, np.float32),
                   mask_out: on_grid_of(t1w, mask_data, np.uint8)})
