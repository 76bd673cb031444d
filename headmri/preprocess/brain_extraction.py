"""Brain extraction (skull stripping) in the subject's native space.

Two backends write the same outputs, a skull-stripped T1w and a binary brain mask, both on the input
image's own grid and orientation:

- ``embedded``: deepbet (Fisch et al. 2024), a registry package that ships its weights; about 5 s per 1 mm
  head on CPU, Dice 0.94-0.97 against reference masks. It reorients to RAS internally and back, so the
  outputs keep the input's voxel order and affine (LIA, LPS and oblique inputs included).
- ``fsl``: FSL's BET through Nipype (``fsl.BET``, ``mask=True``), as in the structural paper.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from headmri.atomic import atomic_path
from headmri.errors import ConfigError, InputError
from headmri.t1w import load_t1w

log = logging.getLogger(__name__)

BACKENDS = ("embedded", "fsl")


def extract_brain(
    t1w_path: str | os.PathLike,
    brain_out: str | os.PathLike,
    mask_out: str | os.PathLike,
    *,
    backend: str,
    subject: str,
    bet_frac: float = 0.5,
    threads: int | None = None,
) -> None:
    """Skull-strip one T1w image; write the brain and its mask (uint8 0/1) atomically, or neither.

    The image is fully checked first (``headmri.t1w.load_t1w``: unreadable, truncated, not 3D, NaN,
    all-zero, impossible voxel size or field of view), so bad input fails before any heavy work.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown brain extraction backend {backend!r}; choose one of {BACKENDS}")
    img = load_t1w(t1w_path, subject=subject)
    started = time.perf_counter()
    log.info("%s: brain extraction of %s with the %s backend", subject, t1w_path, backend)
    if backend == "embedded":
        brain, mask = run_deepbet(img, threads=threads)
    else:
        brain, mask = run_bet(t1w_path, workdir_parent=Path(brain_out).parent, frac=bet_frac)
    mask_data = np.asanyarray(mask.dataobj) > 0
    if not mask_data.any():
        raise InputError(f"brain extraction ({backend}) found no brain in the image", subject=subject, path=t1w_path)
    volume_ml = float(mask_data.sum() * np.prod(img.header.get_zooms()[:3]) / 1000.0)
    log.info("%s: brain mask %.0f ml, done in %.1f s", subject, volume_ml, time.perf_counter() - started)
    brain_img = _like(img, np.asanyarray(brain.dataobj, dtype=np.float32) * mask_data, np.float32)
    mask_img = _like(img, mask_data.astype(np.uint8), np.uint8)
    save_together({brain_out: brain_img, mask_out: mask_img})


def _like(reference: nib.Nifti1Image, data: np.ndarray, dtype) -> nib.Nifti1Image:
    """An image on the reference's grid and header (native space), with the given data type."""
    if data.shape != reference.shape[:3]:
        raise RuntimeError(f"brain extraction changed the grid: {data.shape} != {reference.shape[:3]}")
    header = reference.header.copy()
    header.set_data_dtype(dtype)
    out = nib.Nifti1Image(data.astype(dtype), reference.affine, header)
    out.header.set_slope_inter(1, 0)
    return out


def save_together(images: dict) -> None:
    """Write several NIfTI files so that either all appear under their final names or none does."""
    with contextlib.ExitStack() as stack:
        for path, img in images.items():
            tmp = stack.enter_context(atomic_path(path))
            nib.save(img, tmp)


def run_deepbet(img: nib.Nifti1Image, *, threads: int | None = None) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    """deepbet on an in-memory image; GPU when torch sees one, CPU otherwise."""
    import torch
    from deepbet.bet import BrainExtraction

    if threads:
        torch.set_num_threads(int(threads))
    use_gpu = torch.cuda.is_available()
    log.info("deepbet on %s", "GPU" if use_gpu else f"CPU ({torch.get_num_threads()} threads)")
    extractor = BrainExtraction(no_gpu=not use_gpu)
    brain, mask, _tiv = extractor.run(img, threshold=0.5, n_dilate=0)
    return brain, mask


def bet_interface(in_file: str | os.PathLike, out_file: str | os.PathLike, frac: float):
    """The Nipype BET interface the fsl backend runs (exposed so tests can check its command line)."""
    from nipype.interfaces import fsl

    return fsl.BET(in_file=str(in_file), out_file=str(out_file), mask=True, frac=float(frac), output_type="NIFTI_GZ")


def run_bet(t1w_path: str | os.PathLike, *, workdir_parent: Path, frac: float) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    """FSL BET in a scratch folder beside the outputs; the images are loaded into memory before it goes."""
    workdir_parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=".bet.", dir=workdir_parent))
    try:
        interface = bet_interface(Path(t1w_path).resolve(), workdir / "brain.nii.gz", frac)
        log.info("running: %s", interface.cmdline)
        result = interface.run(cwd=str(workdir))
        brain = nib.load(result.outputs.out_file)
        mask = nib.load(result.outputs.mask_file)
        return nib.Nifti1Image(brain.get_fdata(dtype=np.float32), brain.affine, brain.header), nib.Nifti1Image(
            np.asanyarray(mask.dataobj), mask.affine, mask.header
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
