"""Reading a preprocessed resting-state BOLD run (fMRIPrep-style, in MNI space) and cleaning it lightly.

``load_bold`` reads the run, its brain mask and its repetition time and refuses, with an InputError naming
the subject and the file, anything the indicators cannot use: a 3-D image, a mask on another grid, a
missing or implausible TR, NaN or constant time series inside the mask, a space other than the declared
one. ``clean_bold`` then does what nilearn does well: drop the first volumes, resample to the 3 mm MNI
grid, regress the chosen confounds, detrend, band-pass (Butterworth) and smooth, each only when asked.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from headmri.errors import InputError
from headmri.fmri.alff import LOW_FREQUENCY, Band, band_problem
from headmri.fmri.series import describe_bad

log = logging.getLogger(__name__)

TR_RANGE_S = (0.1, 20.0)  # anything outside is a unit error, not a scanner setting


@dataclass(frozen=True)
class Grid:
    shape: tuple[int, int, int]
    affine: np.ndarray


MNI_BOX_MM = ((-90, 90), (-126, 90), (-72, 108))  # SPM's bounding box of MNI space


def mni_grid(voxel_mm: int = 3) -> Grid:
    """SPM's MNI bounding box at ``voxel_mm`` (which must divide its 180 x 216 x 180 mm)."""
    sizes = [hi - lo for lo, hi in MNI_BOX_MM]
    if any(size % voxel_mm for size in sizes):
        raise ValueError(f"{voxel_mm} mm does not divide the MNI box {sizes} mm")
    affine = np.diag([float(voxel_mm)] * 3 + [1.0])
    affine[:3, 3] = [lo for lo, _ in MNI_BOX_MM]
    return Grid(shape=tuple(size // voxel_mm + 1 for size in sizes), affine=affine)


# SPM's 3 mm MNI grid (x -90..90, y -126..90, z -72..108 mm): the paper's "3-mm isotropic voxels".
MNI_3MM = mni_grid(3)


@dataclass(frozen=True)
class BoldFiles:
    """One subject's run: the BOLD, its brain mask, optional confounds TSV and sidecar JSON (by default the
    BOLD's name with .json), and the space the run must be in (checked against a ``space-`` entity)."""

    subject: str
    bold: Path
    mask: Path
    confounds: Path | None = None
    sidecar: Path | None = None
    space: str | None = None

    def sidecar_path(self) -> Path:
        if self.sidecar is not None:
            return Path(self.sidecar)
        name = re.sub(r"\.nii(\.gz)?$", "", Path(self.bold).name)
        return Path(self.bold).with_name(name + ".json")


@dataclass(frozen=True)
class Cleaning:
    """What ``clean_bold`` does; each indicator asks for its own (headmri.fmri.indicators)."""

    drop_volumes: int = 0
    confounds: tuple[str, ...] = ()
    detrend: bool = True
    band_pass: bool = False
    band: Band = LOW_FREQUENCY
    smooth_fwhm: float | None = None
    grid: Grid | None = MNI_3MM  # None: keep the run's grid


@dataclass(frozen=True)
class Bold:
    """A loaded run: 4-D float32 image, 3-D uint8 mask on its grid, TR in seconds."""

    files: BoldFiles
    img: nib.Nifti1Image
    mask: nib.Nifti1Image
    tr: float

    def mask_array(self) -> np.ndarray:
        return np.asarray(self.mask.dataobj) > 0

    def series(self) -> np.ndarray:
        """In-mask time series, voxels x time."""
        return np.asarray(self.img.dataobj)[self.mask_array()]


def _read(path: Path, subject: str, what: str) -> nib.Nifti1Image:
    if not Path(path).exists():
        raise InputError(f"the {what} does not exist", subject=subject, path=path)
    try:
        return nib.load(path)
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise InputError(f"the {what} cannot be read as NIfTI ({exc})", subject=subject, path=path) from exc


def _sidecar_tr(files: BoldFiles) -> float | None:
    path = files.sidecar_path()
    if not path.exists():
        return None
    try:
        value = json.loads(path.read_text()).get("RepetitionTime")
    except (OSError, ValueError, AttributeError) as exc:
        raise InputError(f"the BOLD sidecar cannot be read as a JSON object ({exc})", subject=files.subject, path=path) from exc
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise InputError(f"RepetitionTime is {value!r}, not a number of seconds", subject=files.subject, path=path)
    return float(value)


def _header_tr(img: nib.Nifti1Image) -> float | None:
    zooms = img.header.get_zooms()
    if len(zooms) < 4 or not zooms[3]:
        return None
    unit = img.header.get_xyzt_units()[1]
    return float(zooms[3]) * {"msec": 1e-3, "usec": 1e-6}.get(unit, 1.0)


def repetition_time(files: BoldFiles, img: nib.Nifti1Image) -> float:
    """The TR in seconds: the sidecar's RepetitionTime, else the header's fourth pixel dimension."""
    sidecar, header = _sidecar_tr(files), _header_tr(img)
    tr = sidecar if sidecar is not None else header
    if tr is None:
        raise InputError(f"no repetition time: neither a RepetitionTime in {files.sidecar_path()} nor a time step in "
                         "the header", subject=files.subject, path=files.bold)
    lo, hi = TR_RANGE_S
    if not lo <= tr <= hi:
        raise InputError(f"the repetition time {tr:g} s is outside {lo:g}-{hi:g} s (a unit error?)",
                         subject=files.subject, path=files.bold)
    if sidecar is not None and header is not None and abs(sidecar - header) > 0.01 * sidecar:
        log.warning("%s: the sidecar's TR %.4g s differs from the header's %.4g s; using the sidecar's",
                    files.subject, sidecar, header)
    return tr


def _check_space(files: BoldFiles) -> None:
    found = re.search(r"_space-([A-Za-z0-9]+)", Path(files.bold).name)
    if files.space and found and found.group(1) != files.space:
        raise InputError(f"is in space {found.group(1)}, not the declared {files.space}", subject=files.subject,
                         path=files.bold)


def check_header(files: BoldFiles, drop_volumes: int = 0, band: Band = LOW_FREQUENCY,
                 confounds: tuple[str, ...] = ()) -> float:
    """The cheap checks (headers, sidecar and the confounds table, for the input checks before heavy work):
    returns the TR. ``confounds``: the columns the indicators will regress (``read_confounds``' checks)."""
    _check_space(files)
    img = _read(files.bold, files.subject, "BOLD run")
    if img.ndim != 4 or img.shape[3] < 2:
        raise InputError(f"has shape {img.shape}: a 4-D BOLD run with several volumes is expected",
                         subject=files.subject, path=files.bold)
    mask = _read(files.mask, files.subject, "brain mask")
    if mask.shape[:3] != img.shape[:3] or not np.allclose(mask.affine, img.affine, atol=1e-3):
        raise InputError(f"the brain mask's grid {mask.shape[:3]} does not match the BOLD's {img.shape[:3]} "
                         "(shape or affine)", subject=files.subject, path=files.mask)
    tr = repetition_time(files, img)
    kept = img.shape[3] - int(drop_volumes)
    problem = band_problem(kept, tr, band)
    if problem:
        raise InputError(f"after dropping the first {drop_volumes} volumes, {problem}", subject=files.subject,
                         path=files.bold)
    read_confounds(files, tuple(confounds), img.shape[3])
    return tr


def load_bold(files: BoldFiles, drop_volumes: int = 0, band: Band = LOW_FREQUENCY) -> Bold:
    """Read and check a run (see the module docstring for what is refused)."""
    tr = check_header(files, drop_volumes, band)
    img, mask_img = nib.load(files.bold), nib.load(files.mask)
    inside = np.asarray(mask_img.dataobj).reshape(mask_img.shape[:3]) > 0
    if not inside.any():
        raise InputError("the brain mask is empty", subject=files.subject, path=files.mask)
    try:
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:  # truncated gzip, short file
        raise InputError(f"is truncated or corrupt ({exc})", subject=files.subject, path=files.bold) from exc
    problem = describe_bad(data[inside])
    if problem:
        raise InputError(f"has {problem} inside the brain mask", subject=files.subject, path=files.bold)
    data[~np.isfinite(data)] = 0  # outside the mask only (checked above); smoothing would spread them
    mask = nib.Nifti1Image(inside.astype(np.uint8), img.affine)
    return Bold(files=files, img=nib.Nifti1Image(data, img.affine), mask=mask, tr=tr)


def read_confounds(files: BoldFiles, columns: tuple[str, ...], n_volumes: int) -> np.ndarray | None:
    """The chosen confound columns (volumes x columns); n/a (fMRIPrep's first row of derivatives) becomes
    the column's mean, so it regresses nothing there."""
    if not columns:
        return None
    if files.confounds is None or not Path(files.confounds).exists():
        raise InputError(f"confounds {list(columns)} are asked for but the confounds file does not exist",
                         subject=files.subject, path=files.confounds)
    try:
        table = pd.read_csv(files.confounds, sep="\t", na_values=["n/a"])
    except Exception as exc:
        raise InputError(f"the confounds file cannot be read as a TSV ({exc})", subject=files.subject, path=files.confounds) from exc
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(f"the confounds file lacks the column(s) {missing}", subject=files.subject, path=files.confounds)
    if len(table) != n_volumes:
        raise InputError(f"the confounds file has {len(table)} rows for {n_volumes} volumes",
                         subject=files.subject, path=files.confounds)
    chosen = table[list(columns)].astype(float)
    empty = [c for c in columns if chosen[c].isna().all()]
    if empty:
        raise InputError(f"the confound column(s) {empty} hold no numbers", subject=files.subject, path=files.confounds)
    return chosen.fillna(chosen.mean()).to_numpy()


def _on_grid(bold: Bold, grid: Grid) -> Bold:
    """The run resampled (continuous) and its mask (nearest) onto ``grid``; mask voxels whose resampled
    series is constant (outside the run's field of view) leave the mask, with a warning."""
    from nilearn.image import resample_img

    if bold.img.shape[:3] == grid.shape and np.allclose(bold.img.affine, grid.affine, atol=1e-3):
        return bold
    kw = {"target_affine": grid.affine, "target_shape": grid.shape, "force_resample": True, "copy_header": True}
    img = resample_img(bold.img, interpolation="continuous", **kw)
    inside = np.asarray(resample_img(bold.mask, interpolation="nearest", **kw).dataobj) > 0
    data = np.asarray(img.dataobj, dtype=np.float32)
    flat = np.ptp(data[inside], axis=1) == 0
    if flat.any():
        log.warning("%s: %d mask voxels have a constant series after resampling (outside the run's field of "
                    "view) and leave the mask", bold.files.subject, int(flat.sum()))
        inside[tuple(np.argwhere(inside)[flat].T)] = False
    mask = nib.Nifti1Image(inside.astype(np.uint8), grid.affine)
    return replace(bold, img=nib.Nifti1Image(data, grid.affine), mask=mask)


def clean_bold(bold: Bold, cleaning: Cleaning, confounds: np.ndarray | None = None) -> Bold:
    """Drop volumes, resample, regress confounds, detrend, band-pass and smooth, as ``cleaning`` says."""
    from nilearn.image import clean_img, index_img, smooth_img

    drop = int(cleaning.drop_volumes)
    problem = band_problem(bold.img.shape[3] - drop, bold.tr, cleaning.band)
    if problem:
        raise InputError(f"after dropping the first {drop} volumes, {problem}", subject=bold.files.subject,
                         path=bold.files.bold)
    if confounds is not None and len(confounds) != bold.img.shape[3]:
        raise ValueError(f"{len(confounds)} confound rows for {bold.img.shape[3]} volumes")
    out = replace(bold, img=index_img(bold.img, slice(drop, None))) if drop else bold
    if cleaning.grid is not None:
        out = _on_grid(out, cleaning.grid)
    band = {"high_pass": cleaning.band.low, "low_pass": cleaning.band.high} if cleaning.band_pass else {}
    # butterworth__copy=True: nilearn's in-place variant loops over voxels in Python (30 s for a brain at
    # 3 mm); the copy filters every voxel in one scipy call, with a copy of the in-mask series only.
    img = clean_img(out.img, detrend=cleaning.detrend, standardize=None, t_r=out.tr, mask_img=out.mask,
                    confounds=None if confounds is None else confounds[drop:], clean__butterworth__copy=True, **band)
    if cleaning.smooth_fwhm:
        img = smooth_img(img, cleaning.smooth_fwhm)
    return replace(out, img=nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32), out.img.affine))
