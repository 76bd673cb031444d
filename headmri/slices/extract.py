"""Slice tensors: one memory-mappable array of normalised 2D slices per subject, plus its geometry.

The brain (already on the MNI grid, skull-stripped) is put in canonical RAS orientation, cut along
``axis``, slices with too little brain are dropped, intensities are normalised per subject with robust
percentiles inside the brain mask, and every slice is padded to a square and resized to ``size`` without
cropping (open_clip's shortest-side resize + centre crop would cut the frontal and occipital poles).
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np

from headmri.atomic import atomic_path, write_json
from headmri.errors import InputError
from headmri.nifti_io import InflatingNifti, load_nifti
from headmri.slices.geometry import SliceGeometry
from headmri.slices.percentiles import linear_percentiles
from headmri.slices.smooth import smooth_stack, stack_sigmas

log = logging.getLogger(__name__)

DTYPES = ("uint8", "float16")
# Slices normalised, resized and encoded together: a few MiB of float32, which stay in the CPU cache.
_FINISH_BLOCK = 8


@contextmanager
def _reading(path: str | Path, subject: str | None, what: str) -> Iterator[None]:
    """Turn the errors of reading a NIfTI file into an ``InputError`` that names the file."""
    try:
        yield
    except FileNotFoundError as exc:
        raise InputError(f"the {what} image does not exist", subject=subject, path=path) from exc
    except Exception as exc:  # nibabel and the decompressor raise several types for a damaged file
        raise InputError(f"the {what} image cannot be read as NIfTI ({exc})", subject=subject, path=path) from exc


def _canonical(img: nib.Nifti1Image, path: str | Path, subject: str | None, what: str) -> nib.Nifti1Image:
    """The 3D image in canonical RAS orientation: a view of ``img``'s array where it holds one."""
    if len(img.shape) == 4 and img.shape[3] == 1:
        img = img.slicer[..., 0]
    if len(img.shape) != 3:
        raise InputError(f"the {what} image must be 3D, its shape is {img.shape}", subject=subject, path=path)
    return nib.as_closest_canonical(img)


def _read_canonical(path: str | Path, subject: str | None, what: str) -> tuple[nib.Nifti1Image, np.ndarray]:
    with _reading(path, subject, what):
        img = load_nifti(path)
    img = _canonical(img, path, subject, what)
    return img, np.asarray(img.dataobj)


def _read_mask(
    path: str | Path, subject: str | None, axis: int, size: int, min_brain_fraction: float,
) -> tuple[nib.Nifti1Image, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """The mask (boolean), each slice's brain fraction, the kept slices' indices and, where any slice is
    kept, their padded mask planes (the padding depends on the grid's shape only; the caller checks the
    brain's)."""
    img, mask = _read_canonical(path, subject, "brain mask")
    # An integer mask compares with an integer: against 0.5 numpy would cast every voxel to float64 first
    # (7x slower on the MNI grid); for integers "> 0" and "> 0.5" select the same voxels.
    mask = mask > 0 if mask.dtype.kind in "iub" else mask > 0.5
    fraction = brain_fraction_per_slice(mask, axis)
    kept = np.flatnonzero(fraction >= min_brain_fraction)
    if not kept.size:
        return img, mask, fraction, kept, None
    grid = SliceGeometry.create(axis=axis, size=size, source_shape=mask.shape, source_affine=img.affine,
                                kept_indices=kept.tolist())
    return img, mask, fraction, kept, grid.padded_planes(mask)


def _finish(planes: np.ndarray, inside: np.ndarray, low: float, high: float, geometry: SliceGeometry,
            dtype: str, out: np.ndarray) -> None:
    """Normalise padded planes in place, resize them and store them encoded into ``out``."""
    if planes.shape[0]:
        normalise(planes, inside, low, high, inplace=True)
        out[...] = encode(geometry.resize(planes), dtype, inplace=True)


def _smoothed(slices: np.ndarray, inside: np.ndarray, geometry: SliceGeometry, fwhm_mm: float, dtype: str) -> np.ndarray:
    """The encoded stack smoothed inside the brain (the padded mask resized as the slices were), encoded."""
    brain = np.asarray(geometry.resize(inside.astype(np.float32))) >= 0.5
    return encode(smooth_stack(decode(slices), brain, stack_sigmas(geometry, fwhm_mm)), dtype, inplace=True)


def brain_fraction_per_slice(mask: np.ndarray, axis: int) -> np.ndarray:
    """Fraction of each slice's area (before padding) that lies inside the mask."""
    other = tuple(ax for ax in range(3) if ax != axis)
    return mask.mean(axis=other)


def _inside(brain: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The brain's values inside the mask, as float32 (their order is irrelevant to percentiles)."""
    # Boolean indexing walks the arrays in C order; nibabel's arrays are Fortran-ordered, so gather from
    # their transposes (the same voxels, visited in memory order): twice as fast.
    if brain.strides[0] < brain.strides[-1]:
        brain, mask = brain.T, mask.T
    return brain[mask].astype(np.float32, copy=False)


def _inflate(brain: InflatingNifti, planes_done: queue.SimpleQueue) -> None:
    """Inflate the brain, posting the count of complete planes after each chunk and None at the end."""
    try:
        for done in brain.inflate():
            planes_done.put(done)
    finally:
        planes_done.put(None)


def _canonical_bands(affine: np.ndarray, n_planes: int) -> Callable[[int, int], tuple[int, int, int]]:
    """Where file planes ``start..stop-1`` (voxel axis 2 as stored) lie in canonical orientation:
    a function of (start, stop) giving (canonical axis, start, stop)."""
    axis, flip = (int(v) for v in nib.io_orientation(affine)[2])
    if flip < 0:
        return lambda start, stop: (axis, n_planes - stop, n_planes - start)
    return lambda start, stop: (axis, start, stop)


def normalise(brain: np.ndarray, mask: np.ndarray, low: float, high: float, *, inplace: bool = False) -> np.ndarray:
    """Map [low, high] to [0, 1], clip, and zero everything outside the brain mask (float32)."""
    out = brain if inplace and brain.dtype == np.float32 else brain.astype(np.float32)
    out -= np.float32(low)
    out *= np.float32(1.0 / (high - low))
    np.clip(out, 0.0, 1.0, out=out)
    out *= mask
    return out


def encode(slices: np.ndarray, dtype: str, *, inplace: bool = False) -> np.ndarray:
    """Store [0, 1] floats as uint8 (value * 255, rounded) or float16. ``inplace`` reuses a float32
    ``slices`` as scratch space (one array of the stack's size less to allocate and fault in)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    work = slices if inplace and slices.dtype == np.float32 else np.array(slices, dtype=np.float32)
    np.clip(work, 0.0, 1.0, out=work)
    if dtype == "float16":
        return work.astype(np.float16)
    work *= np.float32(255.0)
    np.rint(work, out=work)
    return work.astype(np.uint8)


def decode(stored: np.ndarray) -> np.ndarray:
    """The inverse of ``encode``: float32 values in [0, 1]."""
    if stored.dtype == np.uint8:
        return stored.astype(np.float32) / np.float32(255.0)
    return stored.astype(np.float32)


def _check_mask(brain_img, mask_img, mask: np.ndarray, paths: tuple, subject: str | None) -> None:
    """The brain mask must be on the brain's grid and hold brain voxels (``paths``: brain, mask)."""
    brain_mni, mask_mni = paths
    if brain_img.shape != mask_img.shape:
        raise InputError(f"the brain mask's shape {mask_img.shape} differs from the brain's {brain_img.shape} "
                         f"({brain_mni}); both must be on the same grid", subject=subject, path=mask_mni)
    if not np.allclose(brain_img.affine, mask_img.affine, atol=1e-3):
        raise InputError(f"the brain mask's affine differs from the brain's ({brain_mni}); both must be on the "
                         f"same grid", subject=subject, path=mask_mni)
    if not mask.any():
        raise InputError("the brain mask is empty", subject=subject, path=mask_mni)


def _description(subject: str | None, paths: tuple, parameters: dict, window: tuple[float, float],
                 fractions: np.ndarray, shape: tuple, geometry: SliceGeometry) -> dict:
    """The slice file's JSON: inputs, parameters, intensity window, kept fractions, shape and geometry."""
    dtype = parameters["dtype"]
    return {
        "subject": subject,
        "inputs": {"brain": str(paths[0]), "mask": str(paths[1])},
        "parameters": parameters,
        "intensity": {"window": [window[0], window[1]], "scale": "value = clip((x - window[0]) / (window[1] - window[0]), 0, 1); "
                      "zero outside the brain mask",
                      "stored_as": "uint8: value * 255 rounded" if dtype == "uint8" else "float16: value"},
        "brain_fraction_kept": [round(float(f), 5) for f in fractions],
        "shape": list(shape),
        "geometry": geometry.to_dict(),
    }


# A fixed window that clips more of the brain than this is the wrong window for the image (another unit,
# another indicator), not a choice: the slices would be flat.
MAX_CLIPPED = 0.5


def _window(values: list[np.ndarray], fixed: tuple[float, float] | None, percentiles: tuple[float, float],
            where: tuple[str | None, str | Path]) -> tuple[float, float]:
    """The fixed window, or the percentiles of the brain's values (np.percentile's, 5x faster: percentiles.py)."""
    brain = np.concatenate(values)
    if fixed is None:
        low, high = linear_percentiles(brain, percentiles)
        return float(low), float(high)
    low, high = float(fixed[0]), float(fixed[1])
    clipped = float(np.count_nonzero((brain < low) | (brain > high))) / max(brain.size, 1)
    if clipped > MAX_CLIPPED:
        raise InputError(f"{clipped:.0%} of the brain's values lie outside the source's fixed window [{low:g}, {high:g}] "
                         f"(they range {brain.min():g} to {brain.max():g}): set the source's window for this image, or "
                         "null for each subject's percentiles", subject=where[0], path=where[1])
    return low, high


def extract_slices(
    brain_mni: str | Path,
    mask_mni: str | Path,
    out_npy: str | Path,
    out_json: str | Path,
    *,
    axis: int = 0,
    size: int = 224,
    min_brain_fraction: float = 0.02,
    percentiles: tuple[float, float] = (0.5, 99.5),
    window: tuple[float, float] | None = None,
    dtype: str = "uint8",
    subject: str | None = None,
    smooth_fwhm_mm: float = 0.0,
) -> SliceGeometry:
    """Write the slice tensor ``out_npy`` (n_kept, size, size) and its parameters/geometry ``out_json``.

    The intensity window is ``window`` (low, high in the image's units, the same for every subject) when
    given, else the subject's ``percentiles`` inside the mask. ``smooth_fwhm_mm`` > 0: the stack is smoothed
    inside the brain with a Gaussian of that width (headmri.slices.smooth)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    low_pct, high_pct = (float(p) for p in percentiles)
    if not 0.0 <= low_pct < high_pct <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
    # The brain inflates chunk by chunk on one thread (decompression releases the GIL) while another reads
    # the mask, which is smaller; then this thread checks, gathers and cuts every band of brain planes as
    # soon as it has inflated, so little is left to do after the last chunk.
    with _reading(brain_mni, subject, "brain"):
        brain_file = InflatingNifti(brain_mni)
    with ThreadPoolExecutor(2, thread_name_prefix="slices") as pool:
        planes_done: queue.SimpleQueue = queue.SimpleQueue()
        inflating = pool.submit(_inflate, brain_file, planes_done)
        mask_job = pool.submit(_read_mask, mask_mni, subject, axis, size, min_brain_fraction)
        brain_img = _canonical(brain_file.image, brain_mni, subject, "brain")
        # A view of the array being filled; scaled data (read whole by nibabel) are scaled in float32, as before.
        brain = (brain_img.dataobj if isinstance(brain_img.dataobj, np.ndarray)
                 else np.asarray(brain_img.dataobj, dtype=np.float32))
        mask_img, mask, fraction, kept, inside = mask_job.result()
        _check_mask(brain_img, mask_img, mask, (brain_mni, mask_mni), subject)

        dropped = np.flatnonzero(fraction < min_brain_fraction)
        geometry = planes = None
        if kept.size:
            geometry = SliceGeometry.create(axis=axis, size=size, source_shape=brain.shape,
                                            source_affine=brain_img.affine, kept_indices=kept.tolist(),
                                            dropped_indices=dropped.tolist())
            # Normalising the padded planes later gives the values of normalising the volume first: the
            # padding stays zero because the padded mask is False there.
            planes = np.zeros((kept.size, geometry.padded, geometry.padded), dtype=np.float32)
        finite, values, band_start = True, [], 0
        canonical_band = _canonical_bands(brain_file.image.affine, brain_file.n_planes)
        for band_stop in iter(planes_done.get, None):
            if band_stop == band_start:
                continue
            band_axis, start, stop = canonical_band(band_start, band_stop)
            part = (slice(None),) * band_axis + (slice(start, stop),)
            finite = finite and bool(np.isfinite(brain[part]).all())
            values.append(_inside(brain[part], mask[part]))
            if geometry is not None:
                geometry.fill_padded(planes, brain, band_axis, start, stop)
            band_start = band_stop
        with _reading(brain_mni, subject, "brain"):
            inflating.result()
        if not finite:
            raise InputError("the brain image holds NaN or infinite values", subject=subject, path=brain_mni)
        low, high = _window(values, window, (low_pct, high_pct), (subject, brain_mni))
        if not high > low:
            raise InputError(f"the brain has no intensity contrast inside the mask (percentiles {low_pct} and "
                             f"{high_pct} are both {low:g})", subject=subject, path=brain_mni)
        if geometry is None:
            raise InputError(f"no slice along axis {axis} has a brain fraction of at least {min_brain_fraction} "
                             f"(largest is {fraction.max():.4f})", subject=subject, path=mask_mni)
        # Every slice is normalised, resized and encoded on its own, so blocks of the stack run on two
        # threads (numpy and torch release the GIL) and give the same bytes as the whole stack at once.
        # A block of a few slices stays in the CPU's cache through all three steps.
        slices = np.empty((kept.size, size, size), dtype=np.uint8 if dtype == "uint8" else np.float16)
        blocks = [slice(i, i + _FINISH_BLOCK) for i in range(0, kept.size, _FINISH_BLOCK)]
        for done in [pool.submit(_finish, planes[b], inside[b], low, high, geometry, dtype, slices[b]) for b in blocks]:
            done.result()
        if smooth_fwhm_mm > 0:
            slices = _smoothed(slices, inside, geometry, smooth_fwhm_mm, dtype)

    with atomic_path(out_npy) as tmp:
        np.save(tmp, slices, allow_pickle=False)
    write_json(_description(subject, (brain_mni, mask_mni), {"axis": axis, "size": size, "min_brain_fraction": min_brain_fraction,
                            "percentiles": None if window else [low_pct, high_pct], "window": list(window) if window else None,
                            "dtype": dtype, "smooth_fwhm_mm": smooth_fwhm_mm}, (low, high), fraction[kept], slices.shape,
                            geometry), out_json)
    log.info("%s: kept %d of %d slices along axis %d, window [%.4g, %.4g], wrote %s",
             subject or brain_mni, kept.size, fraction.size, axis, low, high, out_npy)
    return geometry
