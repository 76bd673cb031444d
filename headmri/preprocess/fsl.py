"""The fsl backend, as in the structural paper: BET for brain extraction, FLIRT (12 dof) to FSL's
``MNI152_T1_1mm_brain``, both through Nipype.

FLIRT's matrix is kept as text and converted to the RAS world affine through FSL's scaled-voxel
conventions (``headmri.preprocess.transforms.fsl_to_ras``); the mask is moved with ``flirt -applyxfm``
and nearest neighbour. FSL stores its MNI grid radiologically; the outputs are flipped to RAS voxel order
(the same world grid as the embedded template). Each tool runs in a scratch folder beside the outputs,
removed afterwards whatever happens.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from headmri.preprocess.mni import load_brain_and_mask, skull_stripped_template, write_registration
from headmri.preprocess.native import write_brain_extraction
from headmri.preprocess.transforms import fsl_to_ras
from headmri.t1w import load_t1w

log = logging.getLogger(__name__)


def _scratch(beside: str | os.PathLike, prefix: str) -> Path:
    parent = Path(beside).parent
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))


def _in_memory(path: Path, dtype=None) -> nib.Nifti1Image:
    """Load fully now: the scratch folder goes before the caller writes the outputs."""
    img = nib.load(path)
    data = np.asanyarray(img.dataobj) if dtype is None else np.asanyarray(img.dataobj, dtype=dtype)
    return nib.Nifti1Image(data, img.affine, img.header)


# --- brain extraction --------------------------------------------------------------------------------


def bet_interface(in_file: str | os.PathLike, out_file: str | os.PathLike, frac: float):
    """The Nipype BET interface of the fsl backend (tests check its command line)."""
    from nipype.interfaces import fsl

    return fsl.BET(in_file=str(in_file), out_file=str(out_file), mask=True, frac=float(frac), output_type="NIFTI_GZ")


def extract_brain_bet(t1w_path: str | os.PathLike, brain_out: str | os.PathLike, mask_out: str | os.PathLike,
                      *, subject: str, frac: float = 0.5) -> None:
    """Check the T1w fully, skull-strip it with FSL BET, write brain and mask in native space."""
    img = load_t1w(t1w_path, subject=subject)
    workdir = _scratch(brain_out, ".bet.")
    try:
        started = time.perf_counter()
        interface = bet_interface(Path(t1w_path).resolve(), workdir / "brain.nii.gz", frac)
        log.info("running: %s", interface.cmdline)
        result = interface.run(cwd=str(workdir))
        brain, mask = _in_memory(Path(result.outputs.out_file), np.float32), _in_memory(Path(result.outputs.mask_file))
        log.info("%s: BET took %.1f s", subject, time.perf_counter() - started)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    write_brain_extraction(img, brain, mask, brain_out, mask_out, subject=subject, t1w_path=t1w_path, backend="fsl")


# --- registration ------------------------------------------------------------------------------------


def fsl_template_mask(template_brain: str | os.PathLike) -> Path:
    """FSL's brain mask beside its ``MNI152_T1_1mm_brain`` (``MNI152_T1_1mm_brain_mask.nii.gz``)."""
    path = Path(template_brain)
    return path.with_name(path.name.replace(".nii.gz", "").replace(".nii", "") + "_mask.nii.gz")


def default_template() -> tuple[Path, Path]:
    from headmri.templates import fsl_template

    brain = fsl_template()
    return brain, fsl_template_mask(brain)


def flirt_interface(in_file, reference, out_file, out_matrix_file):
    """Nipype FLIRT, 12 dof, writing the resampled image and the matrix (tests check its command line)."""
    from nipype.interfaces import fsl

    return fsl.FLIRT(in_file=str(in_file), reference=str(reference), out_file=str(out_file),
                     out_matrix_file=str(out_matrix_file), dof=12, output_type="NIFTI_GZ")


def applyxfm_interface(in_file, reference, in_matrix_file, out_file, out_matrix_file):
    """Nipype ApplyXFM (``flirt -applyxfm``) with nearest neighbour, for the brain mask."""
    from nipype.interfaces import fsl

    return fsl.ApplyXFM(in_file=str(in_file), reference=str(reference), in_matrix_file=str(in_matrix_file),
                        apply_xfm=True, interp="nearestneighbour", out_file=str(out_file),
                        out_matrix_file=str(out_matrix_file), output_type="NIFTI_GZ")


def register_flirt(
    brain: str | os.PathLike,
    mask: str | os.PathLike,
    template_brain: str | os.PathLike | None,
    template_mask: str | os.PathLike | None,
    brain_out: str | os.PathLike,
    mask_out: str | os.PathLike,
    xfm_out: str | os.PathLike,
    affine_out: str | os.PathLike,
    *,
    subject: str,
) -> None:
    """FLIRT 12 dof; ``None`` templates mean ``$FSLDIR``'s MNI152_T1_1mm_brain and its mask."""
    if template_brain is None or template_mask is None:
        template_brain, template_mask = default_template()
    load_brain_and_mask(brain, mask, subject)  # same checks as the embedded backend, before FSL runs
    fixed_img = skull_stripped_template(template_brain, template_mask)
    workdir = _scratch(brain_out, ".flirt.")
    try:
        started = time.perf_counter()
        reference = workdir / "template_brain.nii.gz"
        nib.save(fixed_img, reference)
        flirt = flirt_interface(Path(brain).resolve(), reference, workdir / "brain_mni.nii.gz", workdir / "xfm.mat")
        log.info("running: %s", flirt.cmdline)
        flirt.run(cwd=str(workdir))
        apply = applyxfm_interface(Path(mask).resolve(), reference, workdir / "xfm.mat",
                                   workdir / "mask_mni.nii.gz", workdir / "mask_xfm.mat")
        log.info("running: %s", apply.cmdline)
        apply.run(cwd=str(workdir))
        source = nib.load(brain)
        affine = fsl_to_ras(np.loadtxt(workdir / "xfm.mat"), source.shape[:3], source.affine,
                            fixed_img.shape[:3], fixed_img.affine)
        log.info("%s: FLIRT took %.1f s; subject->MNI affine:\n%s", subject, time.perf_counter() - started,
                 np.array2string(affine, precision=4, suppress_small=True))
        write_registration(_in_memory(workdir / "brain_mni.nii.gz", np.float32), _in_memory(workdir / "mask_mni.nii.gz"),
                           workdir / "xfm.mat", affine, brain_out, mask_out, xfm_out, affine_out)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
