"""One subject's parcellation on the MNI template grid, in FreeSurfer LUT codes, whatever the backend.

- embedded: the embedded atlas (already on the template grid) restricted to the subject's registered
  brain mask.
- freesurfer: recon-all's ``wmparc.mgz`` (conformed 256^3 grid, whose affine nibabel reads as scanner RAS)
  moved into MNI with the subject's own affine (scanner RAS mm -> MNI RAS mm), nearest neighbour.

Both remove the 14 structures the structural paper excludes. Which one a run uses is
``headmri.backends`` (``parcellate_embedded`` or ``parcellate_freesurfer``, each with its adapter script).
"""

from __future__ import annotations

import logging
import os

import nibabel as nib
import numpy as np
from scipy import ndimage

from headmri import labels as lut_labels
from headmri.atomic import save_nifti
from headmri.errors import InputError

log = logging.getLogger(__name__)


def load_world_affine(path: str | os.PathLike, *, subject: str | None = None) -> np.ndarray:
    """Read a 4x4 RAS-mm affine written with numpy.savetxt; reject anything that is not one."""
    try:
        matrix = np.loadtxt(path, dtype=np.float64)
    except Exception as exc:
        raise InputError(f"cannot be read as a 4x4 text matrix ({exc})", subject=subject, path=path) from exc
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
        raise InputError(f"must hold a finite 4x4 matrix, found shape {matrix.shape}", subject=subject, path=path)
    if not np.allclose(matrix[3], [0, 0, 0, 1]) or abs(np.linalg.det(matrix[:3, :3])) < 1e-6:
        raise InputError("is not an invertible affine (last row must be 0 0 0 1)", subject=subject, path=path)
    return matrix


def _label_data(img: nib.spatialimages.SpatialImage, *, subject: str | None, path) -> np.ndarray:
    data = np.asanyarray(img.dataobj)
    data = data.reshape(data.shape[:3]) if data.ndim > 3 and all(s == 1 for s in data.shape[3:]) else data
    if data.ndim != 3:
        raise InputError(f"a label image must be 3D, found shape {data.shape}", subject=subject, path=path)
    if data.dtype.kind in "iu":
        return data.astype(np.int32)
    if not np.all(np.isfinite(data)) or not np.array_equal(data, np.round(data)):
        raise InputError("a label image must hold integer codes", subject=subject, path=path)
    return data.astype(np.int32)


def restrict_to_mask(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Labels outside the brain mask become background (0)."""
    return np.where(mask, labels, 0).astype(np.int32)


def labels_to_mni(
    labels_img: nib.spatialimages.SpatialImage,
    subject_to_mni: np.ndarray,
    reference: nib.spatialimages.SpatialImage,
    *,
    subject: str | None = None,
) -> nib.Nifti1Image:
    """Move a label image from subject space into the reference (MNI) grid with nearest neighbour.

    ``subject_to_mni`` maps the subject's scanner RAS mm to MNI RAS mm. For an MNI voxel v, the source
    voxel is inv(A_labels) @ inv(subject_to_mni) @ A_reference @ v; nearest neighbour keeps every value
    an integer code that exists in the source.
    """
    data = _label_data(labels_img, subject=subject, path=labels_img.get_filename())
    voxel_map = np.linalg.inv(labels_img.affine) @ np.linalg.inv(subject_to_mni) @ reference.affine
    moved = ndimage.affine_transform(
        data, voxel_map, output_shape=reference.shape[:3], order=0, mode="constant", cval=0
    ).astype(np.int32)
    return _label_image(moved, reference.affine)


def _label_image(data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    img = nib.Nifti1Image(data.astype(np.int32), affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=4)
    img.set_sform(affine, code=4)
    return img


def _mask_and_reference(mask_mni: str | os.PathLike, template: str | os.PathLike | None, *, subject: str):
    """The subject's MNI brain mask (boolean), its image, and the reference grid (``template``, or the mask's)."""
    mask_img = nib.load(mask_mni)
    mask = np.asanyarray(mask_img.dataobj).reshape(mask_img.shape[:3]) > 0
    reference = nib.load(template) if template is not None else mask_img
    if reference.shape[:3] != mask_img.shape[:3] or not np.allclose(reference.affine, mask_img.affine, atol=1e-3):
        raise InputError("the brain mask is not on the template grid", subject=subject, path=mask_mni)
    return mask, mask_img, reference


def _write_parcellation(codes: np.ndarray, mask: np.ndarray, affine: np.ndarray, out_dseg: str | os.PathLike, *,
                        subject: str) -> nib.Nifti1Image:
    """Codes outside the brain mask and the 14 excluded structures set to 0, written atomically."""
    codes = lut_labels.remove_excluded(restrict_to_mask(codes, mask))
    unknown = sorted(set(np.unique(codes).tolist()) - {0} - set(lut_labels.lut().index))
    if unknown:
        log.warning("subject %s: %d label values are not in the LUT table: %s", subject, len(unknown), unknown[:10])
    out = _label_image(codes, affine)
    save_nifti(out, out_dseg)
    log.info("subject %s: %d labels inside the brain mask -> %s", subject, len(np.unique(codes)) - 1, out_dseg)
    return out


def parcellate_embedded(out_dseg: str | os.PathLike, *, mask_mni: str | os.PathLike, atlas: str | os.PathLike,
                        subject: str) -> nib.Nifti1Image:
    """The embedded backend: the embedded atlas (on the template grid) restricted to the subject's MNI brain
    mask, the 14 excluded structures set to 0, written to ``out_dseg``."""
    mask, mask_img, _ = _mask_and_reference(mask_mni, None, subject=subject)
    atlas_img = nib.load(atlas)
    if atlas_img.shape[:3] != mask_img.shape[:3] or not np.allclose(atlas_img.affine, mask_img.affine, atol=1e-3):
        raise InputError(
            f"the brain mask's grid {mask_img.shape[:3]} differs from the atlas grid {atlas_img.shape[:3]}",
            subject=subject,
            path=mask_mni,
        )
    codes = _label_data(atlas_img, subject=subject, path=atlas)
    return _write_parcellation(codes, mask, mask_img.affine, out_dseg, subject=subject)


def parcellate_freesurfer(out_dseg: str | os.PathLike, *, mask_mni: str | os.PathLike, wmparc: str | os.PathLike,
                          affine: str | os.PathLike, subject: str,
                          template: str | os.PathLike | None = None) -> nib.Nifti1Image:
    """The freesurfer backend: recon-all's ``wmparc`` moved to MNI with the subject's ``affine`` (nearest
    neighbour) onto ``template``'s grid (default: the mask's own), restricted to the MNI brain mask, the 14
    excluded structures set to 0, written to ``out_dseg``."""
    mask, _, reference = _mask_and_reference(mask_mni, template, subject=subject)
    try:
        wmparc_img = nib.load(wmparc)
    except Exception as exc:
        raise InputError(f"cannot read recon-all's wmparc ({exc})", subject=subject, path=wmparc) from exc
    subject_to_mni = load_world_affine(affine, subject=subject)
    log.info("moving %s into MNI with %s (nearest neighbour)", wmparc, affine)
    codes = np.asarray(labels_to_mni(wmparc_img, subject_to_mni, reference, subject=subject).dataobj)
    return _write_parcellation(codes, mask, reference.affine, out_dseg, subject=subject)
