"""Gaussian smoothing of a subject's slice stack inside the brain (config ``slices.smooth_fwhm_mm``).

Voxel-based morphometry smooths each brain before comparing groups, so that a structure's mean intensity,
not the exact place of its edges, is what differs (the matched-filter argument: an effect of a structure's
size is found best at about that resolution). After an affine registration the same structure's edges
still lie millimetres apart from subject to subject, and with a few subjects per class a classifier can
learn those edges. The stack is smoothed in millimetres: across slices by the source's voxel spacing
along the slice axis, in the plane by the resized pixel's size. Brain only (normalised convolution:
smooth(image) / smooth(brain), zero outside), so the background does not darken the brain's rim.

Off by default (0). The stored stack is the model's input everywhere (training, explanations, the control
reference), so every consumer sees the same smoothed slices.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from headmri.slices.geometry import SliceGeometry

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def stack_sigmas(geometry: SliceGeometry, fwhm_mm: float) -> tuple[float, float, float]:
    """The Gaussian's sigma in pixels along (slices, rows, columns) for a full width at half maximum in mm."""
    voxel_mm = np.sqrt((np.asarray(geometry.source_affine, dtype=float)[:3, :3] ** 2).sum(axis=0))
    in_plane = [voxel_mm[a] for a in range(3) if a != geometry.axis]
    sigma_mm = fwhm_mm / FWHM_PER_SIGMA
    # a resized pixel spans 1 / scale source voxels; rows and columns share the scale (square padding)
    return (sigma_mm / voxel_mm[geometry.axis],
            sigma_mm * geometry.scale / in_plane[1], sigma_mm * geometry.scale / in_plane[0])


def smooth_stack(slices: np.ndarray, brain: np.ndarray, sigmas: tuple[float, float, float]) -> np.ndarray:
    """``slices`` (n, size, size, values in [0, 1]) smoothed inside ``brain`` (same shape, bool), float32."""
    inside = brain.astype(np.float32)
    numerator = ndimage.gaussian_filter(np.where(brain, slices, 0).astype(np.float32), sigmas, mode="constant")
    weight = ndimage.gaussian_filter(inside, sigmas, mode="constant")
    return np.where(brain, numerator / np.maximum(weight, np.float32(1e-6)), np.float32(0)).astype(np.float32)
