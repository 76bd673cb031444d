"""Affine registration of a skull-stripped brain to the MNI152NLin6Asym 1 mm template.

Two backends write the same outputs:

- ``embedded``: antspyx (``ants.registration``, ``AffineFast`` or ``Affine``) of the brain to the
  skull-stripped template; the ITK transform is saved as ``.mat``.
- ``fsl``: FSL FLIRT through Nipype, 12 dof, to FSL's ``MNI152_T1_1mm_brain`` as in the structural paper;
  the FLIRT matrix is saved as text. The mask is moved with ``flirt -applyxfm`` (nearest neighbour).

Both also write the backend-independent 4x4 matrix mapping subject scanner RAS mm to MNI RAS mm
(``numpy.savetxt``), and both put the MNI-space images on the template grid stored in RAS order (FSL's
files are stored radiologically; flipping the storage order changes no world coordinate).
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
from headmri.preprocess.transforms import fsl_to_ras, itk_to_ras, read_itk_affine

log = logging.getLogger(__name__)

BACKENDS = ("embedded", "fsl")
ANTS_TRANSFORMS = ("AffineFast", "Affine")
# A fixed seed makes ANTs' random metric sampling repeatable: the same input gives the same transform.
ANTS_SEED = 20251121


def register_to_mni(
    brain: str | os.PathLike,
    mask: str | os.PathLike,
    template_brain: str | os.PathLike,
    template_mask: str | os.PathLike,
    brain_out: str | os.PathLike,
    mask_out: str | os.PathLike,
    xfm_out: str | os.PathLike,
    affine_out: str | os.PathLike,
    *,
    backend: str,
    transform: str = "AffineFast",
    subject: str,
    threads: int | None = None,
) -> None:
    """Register a native-space brain (and move its mask) to the template; write four files or none.

    ``template_brain`` is the template T1w; voxels outside ``template_mask`` are zeroed before
    registration, so a whole-head template with its brain mask serves as well as a skull-stripped one.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown registration backend {backend!r}; choose one of {BACKENDS}")
    if backend == "embedded" and transform not in ANTS_TRANSFORMS:
        raise ConfigError(f"unknown ANTs transform {transform!r}; choose one of {ANTS_TRANSFORMS}")
    brain_img = _load(brain, subject)
    mask_img = _load(mask, subject)
    if brain_img.shape[:3] != mask_img.shape[:3] or not np.allclose(brain_img.affine, mask_img.affine, atol=1e-4):
        raise InputError(f"the brain mask {mask} is not on the grid of the brain image", subject=subject, path=brain)
    fixed = skull_stripped_template(template_brain, template_mask)
    started = time.perf_counter()
    log.info("%s: registering %s to %s with the %s backend", subject, brain, template_brain, backend)
    workdir = Path(tempfile.mkdtemp(prefix=".register.", dir=_parent(brain_out)))
    try:
        if backend == "embedded":
            brain_mni, mask_mni, xfm, affine = _register_ants(brain_img, mask_img, fixed, workdir, transform, threads)
        else:
            brain_mni, mask_mni, xfm, affine = _register_flirt(Path(brain), Path(mask), fixed, workdir)
        log.info("%s: registration done in %.1f s; subject->MNI affine:\n%s", subject, time.perf_counter() - started,
                 np.array2string(affine, precision=4, suppress_small=True))
        brain_mni, mask_mni = _as_ras(brain_mni), _as_ras(mask_mni)
        with contextlib.ExitStack() as stack:
            nib.save(_typed(brain_mni, np.float32), stack.enter_context(atomic_path(brain_out)))
            nib.save(_typed(mask_mni, np.uint8, binary=True), stack.enter_context(atomic_path(mask_out)))
            shutil.copyfile(xfm, stack.enter_context(atomic_path(xfm_out)))
            np.savetxt(stack.enter_context(atomic_path(affine_out)), affine, fmt="%.10f")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _parent(path) -> Path:
    parent = Path(path).parent
    parent.mkdir(parents=True, exist_ok=True)
    return parent


def _load(path, subject) -> nib.Nifti1Image:
    try:
        img = nib.load(path)
        data = np.asanyarray(img.dataobj, dtype=np.float32)
    except Exception as exc:
        raise InputError(f"cannot be read as NIfTI ({exc})", subject=subject, path=path) from exc
    return nib.Nifti1Image(data.reshape(data.shape[:3]), img.affine, img.header)


def skull_stripped_template(template_brain, template_mask) -> nib.Nifti1Image:
    """The template T1w times its brain mask, as float32 on the template's own grid."""
    head = nib.load(template_brain)
    brain_mask = nib.load(template_mask)
    if head.shape[:3] != brain_mask.shape[:3] or not np.allclose(head.affine, brain_mask.affine, atol=1e-4):
        raise ConfigError(f"template mask {template_mask} is not on the grid of {template_brain}")
    data = head.get_fdata(dtype=np.float32) * (np.asanyarray(brain_mask.dataobj) > 0)
    header = head.header.copy()
    header.set_data_dtype(np.float32)
    return nib.Nifti1Image(data, head.affine, header)


def _typed(img: nib.Nifti1Image, dtype, binary: bool = False) -> nib.Nifti1Image:
    data = np.asanyarray(img.dataobj)
    data = (data > 0.5) if binary else data
    header = img.header.copy()
    header.set_data_dtype(dtype)
    out = nib.Nifti1Image(data.astype(dtype), img.affine, header)
    out.header.set_slope_inter(1, 0)
    return out


def _as_ras(img: nib.Nifti1Image) -> nib.Nifti1Image:
    """Store in RAS voxel order (a lossless flip/permutation of axes; world coordinates unchanged)."""
    return img if nib.aff2axcodes(img.affine) == ("R", "A", "S") else nib.as_closest_canonical(img)


def crop_to_mask(img: nib.Nifti1Image, mask: nib.Nifti1Image, margin: int = 10) -> nib.Nifti1Image:
    """The image cut to the bounding box of the mask's non-zero voxels plus a margin (same world grid)."""
    inside = np.argwhere(np.asanyarray(mask.dataobj) > 0)
    if not len(inside):
        return img
    lo = np.maximum(inside.min(axis=0) - margin, 0)
    hi = np.minimum(inside.max(axis=0) + margin + 1, img.shape[:3])
    return img.slicer[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]


# --- embedded: antspyx -------------------------------------------------------------------------------


def _register_ants(brain_img, mask_img, fixed_img, workdir: Path, transform: str, threads: int | None):
    if threads:
        # ITK reads this once, when it first starts threads: effective in a fresh process (a rule's job).
        os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", str(int(threads)))
    import ants

    ants.config._random_seed = ANTS_SEED  # antspyx passes it as --random-seed (set_ants_deterministic would force 1 thread)
    fixed = ants.from_nibabel_nifti(fixed_img)
    moving = ants.from_nibabel_nifti(brain_img)
    moving_mask = ants.from_nibabel_nifti(mask_img)
    # Register the brains' bounding boxes only: both images are zero outside the brain, and the cost of
    # ANTs' pyramid and metric grows with the voxel count (about 30% faster, same transform). The
    # transform lives in world coordinates, so it applies unchanged to the full grids below.
    result = ants.registration(
        fixed=ants.from_nibabel_nifti(crop_to_mask(fixed_img, fixed_img)),
        moving=ants.from_nibabel_nifti(crop_to_mask(brain_img, mask_img)),
        type_of_transform=transform,
        outprefix=str(workdir / "ants_"),
    )
    xfm = Path(result["fwdtransforms"][0])
    warped_brain = ants.apply_transforms(fixed=fixed, moving=moving, transformlist=[str(xfm)], interpolator="linear")
    warped_mask = ants.apply_transforms(fixed=fixed, moving=moving_mask, transformlist=[str(xfm)],
                                        interpolator="nearestNeighbor")
    affine = itk_to_ras(read_itk_affine(xfm))
    # The warped arrays are indexed like the fixed image, which came from the template's nibabel array.
    return (nib.Nifti1Image(warped_brain.numpy(), fixed_img.affine, fixed_img.header),
            nib.Nifti1Image(warped_mask.numpy(), fixed_img.affine, fixed_img.header), xfm, affine)


# --- fsl: FLIRT through Nipype -----------------------------------------------------------------------


def fsl_template_mask(template_brain: str | os.PathLike) -> Path:
    """FSL's brain mask beside its ``MNI152_T1_1mm_brain`` (``MNI152_T1_1mm_brain_mask.nii.gz``)."""
    path = Path(template_brain)
    return path.with_name(path.name.replace(".nii.gz", "").replace(".nii", "") + "_mask.nii.gz")


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


def _register_flirt(brain: Path, mask: Path, fixed_img, workdir: Path):
    reference = workdir / "template_brain.nii.gz"
    nib.save(fixed_img, reference)
    flirt = flirt_interface(brain.resolve(), reference, workdir / "brain_mni.nii.gz", workdir / "xfm.mat")
    log.info("running: %s", flirt.cmdline)
    flirt.run(cwd=str(workdir))
    apply = applyxfm_interface(mask.resolve(), reference, workdir / "xfm.mat", workdir / "mask_mni.nii.gz",
                               workdir / "mask_xfm.mat")
    log.info("running: %s", apply.cmdline)
    apply.run(cwd=str(workdir))
    source = nib.load(brain)
    affine = fsl_to_ras(np.loadtxt(workdir / "xfm.mat"), source.shape[:3], source.affine,
                        fixed_img.shape[:3], fixed_img.affine)
    brain_mni = nib.load(workdir / "brain_mni.nii.gz")
    mask_mni = nib.load(workdir / "mask_mni.nii.gz")
    # Load into memory now: the scratch folder is removed before the caller writes the outputs.
    return (nib.Nifti1Image(brain_mni.get_fdata(dtype=np.float32), brain_mni.affine, brain_mni.header),
            nib.Nifti1Image(np.asanyarray(mask_mni.dataobj), mask_mni.affine, mask_mni.header),
            workdir / "xfm.mat", affine)
