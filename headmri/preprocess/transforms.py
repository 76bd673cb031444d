"""Affine conventions: every backend's transform as one 4x4 matrix in RAS millimetres.

The pipeline's backend-independent transform maps a point of the subject's scanner space (RAS mm, the
space of ``nibabel``'s ``img.affine``) to the same anatomical point in MNI space (RAS mm). Two backends
store it in their own conventions:

- ANTs/ITK: a physical-space transform in LPS mm that maps points of the *fixed* image (the template) to
  the *moving* image (the subject): the pull-back direction used for resampling.
- FSL FLIRT: a matrix between "scaled voxel" coordinates of the source and the reference image, where
  the x axis is flipped when the image's voxel-to-world matrix has a positive determinant.

We write these conversions ourselves because they are a few lines of linear algebra that the tests pin
down exactly; nitransforms covers them too but is not in our environment, and pulling it in for ~40 lines
is not worth another pinned dependency.
"""

from __future__ import annotations

import numpy as np

# RAS <-> LPS: flip the first two world axes (its own inverse).
LPS_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])


def itk_parameters_to_matrix(parameters, fixed_parameters) -> np.ndarray:
    """The 4x4 matrix of an ITK ``AffineTransform`` / ``MatrixOffsetTransformBase`` (3D).

    ITK stores 9 matrix entries (row-major) and a translation ``t``, and a centre ``c`` as the fixed
    parameters; the point map is ``y = M (x - c) + t + c``.
    """
    params = np.asarray(parameters, dtype=float).ravel()
    if params.size != 12:
        raise ValueError(f"expected 12 parameters of a 3D affine ITK transform, got {params.size}")
    center = np.zeros(3) if fixed_parameters is None or len(fixed_parameters) == 0 else np.asarray(fixed_parameters, float)[:3]
    linear = params[:9].reshape(3, 3)
    translation = params[9:12]
    out = np.eye(4)
    out[:3, :3] = linear
    out[:3, 3] = translation + center - linear @ center
    return out


def itk_to_ras(itk_fixed_to_moving_lps: np.ndarray) -> np.ndarray:
    """Convert an ITK (fixed -> moving, LPS mm) point map into the pipeline's moving -> fixed RAS map.

    With ``moving`` = subject and ``fixed`` = template, the result maps subject RAS mm to MNI RAS mm.
    """
    fixed_to_moving_ras = LPS_FLIP @ np.asarray(itk_fixed_to_moving_lps, dtype=float) @ LPS_FLIP
    return np.linalg.inv(fixed_to_moving_ras)


def ras_to_itk(moving_to_fixed_ras: np.ndarray) -> np.ndarray:
    """The inverse of :func:`itk_to_ras`: the ITK fixed -> moving LPS point map."""
    return LPS_FLIP @ np.linalg.inv(np.asarray(moving_to_fixed_ras, dtype=float)) @ LPS_FLIP


def fsl_scaled_voxel_matrix(shape, affine: np.ndarray) -> np.ndarray:
    """The map from voxel indices to FSL's "scaled voxel" coordinates (mm) of an image.

    FSL scales voxel indices by the voxel sizes and, when the voxel-to-world matrix has a positive
    determinant (neurological storage), flips the first axis so that its internal coordinates are always
    radiological: ``x_fsl = (nx - 1 - i) * dx``.
    """
    affine = np.asarray(affine, dtype=float)
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    scale = np.diag([*zooms, 1.0])
    if np.linalg.det(affine[:3, :3]) > 0:
        flip = np.eye(4)
        flip[0, 0] = -1.0
        flip[0, 3] = shape[0] - 1
        return scale @ flip
    return scale


def fsl_to_ras(flirt_matrix: np.ndarray, source_shape, source_affine, reference_shape, reference_affine) -> np.ndarray:
    """Convert a FLIRT matrix (source -> reference, FSL scaled voxels) into a world RAS mm map.

    world_ref = A_ref . V_ref^-1 . M_flirt . V_src . A_src^-1 . world_src, where A is an image's
    voxel-to-world affine and V its voxel-to-FSL matrix (:func:`fsl_scaled_voxel_matrix`).
    """
    source_vox_to_fsl = fsl_scaled_voxel_matrix(source_shape, source_affine)
    reference_vox_to_fsl = fsl_scaled_voxel_matrix(reference_shape, reference_affine)
    return (
        np.asarray(reference_affine, float)
        @ np.linalg.inv(reference_vox_to_fsl)
        @ np.asarray(flirt_matrix, float)
        @ source_vox_to_fsl
        @ np.linalg.inv(np.asarray(source_affine, float))
    )


def ras_to_fsl(world_matrix: np.ndarray, source_shape, source_affine, reference_shape, reference_affine) -> np.ndarray:
    """The inverse of :func:`fsl_to_ras`: a FLIRT matrix from a world RAS mm map."""
    source_vox_to_fsl = fsl_scaled_voxel_matrix(source_shape, source_affine)
    reference_vox_to_fsl = fsl_scaled_voxel_matrix(reference_shape, reference_affine)
    return (
        reference_vox_to_fsl
        @ np.linalg.inv(np.asarray(reference_affine, float))
        @ np.asarray(world_matrix, float)
        @ np.asarray(source_affine, float)
        @ np.linalg.inv(source_vox_to_fsl)
    )


def apply_affine_to_points(matrix: np.ndarray, points) -> np.ndarray:
    """Apply a 4x4 matrix to an (n, 3) array of points."""
    points = np.atleast_2d(np.asarray(points, dtype=float))
    return points @ np.asarray(matrix)[:3, :3].T + np.asarray(matrix)[:3, 3]


def rotation_angle_deg(linear: np.ndarray) -> float:
    """The rotation angle (degrees) of the orthogonal polar factor of a 3x3 matrix."""
    u, _, vt = np.linalg.svd(np.asarray(linear, dtype=float)[:3, :3])
    rotation = u @ vt
    cos = np.clip((np.trace(rotation) - 1.0) / 2.0, -1.0, 1.0)
    return float(np.degrees(np.arccos(cos)))


def affine_error(estimated: np.ndarray, truth: np.ndarray, points) -> tuple[float, float]:
    """How far an estimated point map is from the truth: (rotation angle in degrees of the residual
    transform, largest displacement in mm over ``points``)."""
    residual = np.asarray(estimated, float) @ np.linalg.inv(np.asarray(truth, float))
    displacement = apply_affine_to_points(estimated, points) - apply_affine_to_points(truth, points)
    return rotation_angle_deg(residual[:3, :3]), float(np.linalg.norm(displacement, axis=1).max())
