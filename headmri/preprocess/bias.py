"""Bias-field correction of the native-space brain (config ``preprocessing.bias_correction``).

- ``none`` (the structural paper's pipeline: BET, then FLIRT; no correction);
- ``n4``: N4 (Tustison et al. 2010) with antspyx's ``n4_bias_field_correction`` inside the brain mask,
  as ClinicaDL's t1-linear and fMRIPrep run it before registration. The scanner's smooth multiplicative
  field varies a structure's brightness by several per cent between subjects, which is the size of the
  effects a classifier of headache groups looks for (docs/preprocessing.md, "Bias-field correction").

The corrected brain replaces the extracted one as the registration's input; the mask is unchanged. The
field's scale is arbitrary (N4 estimates it up to a constant), so the corrected brain is rescaled to the
extracted brain's median inside the mask: intensities stay in the scanner's range for QC and the slices'
percentile window is indifferent to it.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np

from headmri.preprocess.mni import load_brain_and_mask
from headmri.preprocess.native import on_grid_of, save_together

log = logging.getLogger(__name__)

# antspyx's default schedule (4 levels of 50 iterations) on a grid shrunk 4x: 12 s for one idle 1 mm brain,
# 37-44 s a subject in the workflow's jobs beside other runs (docs/benchmarks.md, 2026-12-03 evening).
N4_SHRINK = 4
N4_ITERATIONS = (50, 50, 50, 50)  # per fitting level, coarse to fine
N4_SPLINE_MM = None  # antspyx's default B-spline mesh


def bias_bounds(mask: np.ndarray) -> tuple[slice, ...]:
    """The mask's bounding box: N4's cost grows with the voxels it fits, and outside the brain there are none."""
    where = np.nonzero(mask)
    return tuple(slice(int(w.min()), int(w.max()) + 1) for w in where)


def n4_field(brain: np.ndarray, mask: np.ndarray, spacing: tuple[float, ...], *, shrink: int = N4_SHRINK,
             iterations: tuple[int, ...] = N4_ITERATIONS, spline_mm: float | None = N4_SPLINE_MM) -> np.ndarray:
    """N4's multiplicative bias field (float32, 1 outside the mask) of ``brain`` inside ``mask``; ``shrink``,
    ``iterations`` and ``spline_mm`` as antspyx's ``shrink_factor``, ``convergence["iters"]`` and
    ``spline_param`` (the B-spline mesh's spacing in mm at the first level; None: antspyx's default mesh)."""
    import ants

    box = bias_bounds(mask)
    image = ants.from_numpy(np.ascontiguousarray(brain[box], dtype=np.float32), spacing=tuple(map(float, spacing)))
    inside = ants.from_numpy(np.ascontiguousarray(mask[box], dtype=np.float32), spacing=tuple(map(float, spacing)))
    field = ants.n4_bias_field_correction(image, mask=inside, shrink_factor=int(shrink), return_bias_field=True,
                                          convergence={"iters": list(iterations), "tol": 1e-7},
                                          spline_param=None if spline_mm is None else float(spline_mm))
    out = np.ones(brain.shape, dtype=np.float32)
    out[box] = np.where(mask[box], field.numpy(), 1.0)
    return out


def correct_bias_n4(brain: str | os.PathLike, mask: str | os.PathLike, brain_out: str | os.PathLike, *,
                    subject: str, threads: int | None = None) -> None:
    """Divide the native-space brain by its N4 field (inside the mask) and write it, float32, on its grid."""
    if threads:  # ITK reads it when it first starts threads: effective in a fresh process (a rule's job)
        os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", str(int(threads)))
    brain_img, mask_img = load_brain_and_mask(brain, mask, subject)
    data = np.asanyarray(brain_img.dataobj, dtype=np.float32)
    inside = np.asanyarray(mask_img.dataobj) > 0
    started = time.perf_counter()
    field = n4_field(np.maximum(data, 0), inside, brain_img.header.get_zooms()[:3])
    corrected = np.where(inside, data / field, 0).astype(np.float32)
    corrected *= np.float32(np.median(data[inside]) / max(float(np.median(corrected[inside])), 1e-12))
    low, high = np.percentile(np.log(field[inside]), [1, 99])
    log.info("%s: N4 took %.1f s; the field spans a factor %.2f inside the brain (1st-99th percentile)",
             subject, time.perf_counter() - started, float(np.exp(high - low)))
    save_together({brain_out: on_grid_of(brain_img, corrected, np.float32)})
