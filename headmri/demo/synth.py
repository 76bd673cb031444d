"""Synthesis of one demo subject: the MNI template head moved, warped, resampled, biased and noised.

The subject's anatomy at scanner position y is the (effect-planted) template at
``G^-1(y + u(y))``: ``G`` is a random affine (MNI -> scanner) and ``u`` a smooth displacement field in
scanner millimetres. The affine and the warp are composed into one coordinate map per native voxel, so
the template is interpolated once (``scipy.ndimage.map_coordinates``, trilinear, float32).

Smooth random fields (the warp and the bias field) are sums of low-frequency cosines (a discrete cosine
basis with random coefficients), the same model SPM uses for its nonlinear warps and bias fields; being
separable, the field is a chain of small matrix products rather than a 3D filter of a noise volume.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import nibabel as nib
import numpy as np

# Native field of view in mm along R-L, A-P, S-I: holds the whole MNI head (177 x 211 x 172 mm of it is
# non-zero) after a 5 % enlargement and a 10 degree tilt.
NATIVE_FOV_MM = (192.0, 250.0, 240.0)


@dataclass(frozen=True)
class SubjectDraw:
    """Everything random about one subject; written to the truth table so a cohort can be audited."""

    rotation_deg: float  # angle of the head's rotation (axis-angle)
    rotation_axis: tuple[float, float, float]
    translation_mm: tuple[float, float, float]
    scale: tuple[float, float, float]  # per RAS axis
    oblique_deg: float  # tilt of the acquisition grid against scanner axes
    oblique_axis: tuple[float, float, float]
    warp_rms_mm: float
    bias_rms: float  # root mean square of the log bias field
    noise_fraction: float  # Gaussian sigma of the complex noise, as a fraction of white matter intensity
    gamma: float  # contrast curve exponent (site/scanner contrast)
    intensity_scale: float
    effect_scale: float  # per-subject strength of the planted effect (patients only)

    def row(self) -> dict:
        out = {}
        for key, value in asdict(self).items():
            if isinstance(value, tuple):
                for axis, v in zip("xyz", value):
                    out[f"{key}_{axis}"] = round(float(v), 5)
            else:
                out[key] = round(float(value), 5)
        return out


@dataclass(frozen=True)
class SiteProfile:
    """A synthetic scanner: its noise level, bias-field strength and contrast."""

    name: str
    noise_fraction: tuple[float, float]
    bias_rms: tuple[float, float]
    gamma: tuple[float, float]


SITES = (
    SiteProfile("siteA", noise_fraction=(0.015, 0.025), bias_rms=(0.03, 0.06), gamma=(0.92, 1.0)),
    SiteProfile("siteB", noise_fraction=(0.025, 0.04), bias_rms=(0.05, 0.08), gamma=(1.0, 1.08)),
)


def _unit_vector(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def rotation_matrix(axis: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rodrigues' rotation about a unit axis."""
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    theta = np.deg2rad(angle_deg)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(theta) * k + (1 - np.cos(theta)) * (k @ k)


def draw_subject(
    rng: np.random.Generator,
    site: SiteProfile,
    *,
    max_rotation_deg: float = 10.0,
    max_translation_mm: float = 10.0,
    max_scale: float = 0.05,
    max_oblique_deg: float = 3.0,
    warp_rms_mm: tuple[float, float] = (1.5, 2.5),
    effect_scale: tuple[float, float] = (0.8, 1.2),
) -> SubjectDraw:
    direction = _unit_vector(rng)
    return SubjectDraw(
        rotation_deg=float(rng.uniform(0, max_rotation_deg)),
        rotation_axis=tuple(_unit_vector(rng)),
        translation_mm=tuple(direction * max_translation_mm * rng.uniform() ** (1 / 3)),  # uniform in a ball
        scale=tuple(rng.uniform(1 - max_scale, 1 + max_scale, size=3)),
        oblique_deg=float(rng.uniform(0, max_oblique_deg)),
        oblique_axis=tuple(_unit_vector(rng)),
        warp_rms_mm=float(rng.uniform(*warp_rms_mm)),
        bias_rms=float(rng.uniform(*site.bias_rms)),
        noise_fraction=float(rng.uniform(*site.noise_fraction)),
        gamma=float(rng.uniform(*site.gamma)),
        intensity_scale=float(np.exp(rng.uniform(np.log(0.1), np.log(0.4)))),
        effect_scale=float(rng.uniform(*effect_scale)),
    )


def mni_to_scanner(draw: SubjectDraw, centre_mm: np.ndarray) -> np.ndarray:
    """The 4x4 affine G placing the template head in the scanner: scale and rotate about the head centre,
    then translate. Its inverse is the subject's true (affine) scanner -> MNI transform."""
    linear = rotation_matrix(np.array(draw.rotation_axis), draw.rotation_deg) @ np.diag(draw.scale)
    out = np.eye(4)
    out[:3, :3] = linear
    out[:3, 3] = centre_mm - linear @ centre_mm + np.asarray(draw.translation_mm)
    return out


def orientation_matrix(axcodes: str) -> np.ndarray:
    """3x3 matrix whose columns are the RAS unit vectors of the array axes, e.g. 'LIA' -> -x, -z, +y."""
    ornt = nib.orientations.axcodes2ornt(tuple(axcodes.upper()))
    out = np.zeros((3, 3))
    for axis, (ras_axis, flip) in enumerate(ornt):
        out[int(ras_axis), axis] = flip
    return out


def native_grid(
    centre_mm: np.ndarray,
    *,
    voxel_mm: tuple[float, float, float],
    orientation: str,
    oblique: np.ndarray,
    fov_mm: tuple[float, float, float] = NATIVE_FOV_MM,
) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and voxel -> scanner affine of an acquisition grid centred on ``centre_mm``.

    ``voxel_mm`` is per array axis (as in the NIfTI header); ``oblique`` a small 3x3 rotation of the grid.
    """
    directions = orientation_matrix(orientation)
    ras_axis = np.abs(directions).argmax(axis=0)
    shape = tuple(int(np.ceil(fov_mm[r] / v)) for r, v in zip(ras_axis, voxel_mm))
    linear = oblique @ directions @ np.diag(voxel_mm)
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = centre_mm - linear @ ((np.asarray(shape) - 1) / 2.0)
    return shape, affine  # type: ignore[return-value]


def smooth_field(shape: tuple[int, ...], rng: np.random.Generator, *, n_basis: int, rms: float) -> np.ndarray:
    """A random low-frequency field on ``shape`` with the given root mean square, float32.

    Cosines of 1..n_basis half-periods over each axis (no constant term), coefficients falling with
    frequency so the largest scales dominate.
    """
    bases = []
    for n in shape:
        k = np.arange(1, n_basis + 1)
        bases.append(np.cos(np.pi * np.outer((np.arange(n) + 0.5) / n, k)).astype(np.float32))
    freq = np.add.outer(np.add.outer(np.arange(1, n_basis + 1), np.arange(1, n_basis + 1)), np.arange(1, n_basis + 1))
    coef = (rng.normal(size=(n_basis,) * 3) / freq).astype(np.float32)
    field = np.einsum("pqr,ip,jq,kr->ijk", coef, *bases, optimize=True)
    sample = field[::4, ::4, ::4].astype(np.float64)  # a smooth field: a sparse sample gives its RMS
    current = float(np.sqrt(np.mean(sample**2)))
    return (field * np.float32(rms / max(current, 1e-12))).astype(np.float32)


def coordinate_map(
    shape: tuple[int, int, int],
    native_affine: np.ndarray,
    scanner_to_template_voxel: np.ndarray,
    warp_mm: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
) -> np.ndarray:
    """Template voxel coordinates (3, *shape) of every native voxel: affine part plus the warp."""
    full = scanner_to_template_voxel @ native_affine
    linear = scanner_to_template_voxel[:3, :3]
    grids = [np.arange(n, dtype=np.float32).reshape([-1 if a == i else 1 for a in range(3)]) for i, n in enumerate(shape)]
    coords = np.empty((3, *shape), dtype=np.float32)
    for c in range(3):
        coords[c] = grids[0] * np.float32(full[c, 0]) + grids[1] * np.float32(full[c, 1])
        coords[c] += grids[2] * np.float32(full[c, 2]) + np.float32(full[c, 3])
        if warp_mm is not None:
            for d in range(3):
                coords[c] += np.float32(linear[c, d]) * warp_mm[d]
    return coords


def resample(volumes: Sequence[np.ndarray], coords: np.ndarray) -> list[np.ndarray]:
    """Trilinear interpolation of same-shaped volumes at voxel coordinates ``(3, *out_shape)``, zero outside.

    The result equals ``scipy.ndimage.map_coordinates(v, coords, order=1, mode="grid-constant")`` for each
    volume (tests check it); torch's ``grid_sample`` computes it for all volumes in one pass on all
    threads, about twice as fast per volume as scipy on this machine, which makes a subject take seconds.
    """
    import torch

    size = np.asarray(volumes[0].shape, dtype=np.float32)
    stacked = torch.from_numpy(np.stack([np.asarray(v, dtype=np.float32) for v in volumes]))[None]
    grid = torch.from_numpy(np.ascontiguousarray(coords, dtype=np.float32))
    grid = grid * torch.from_numpy(2.0 / (size - 1)).view(3, 1, 1, 1) - 1.0  # voxel -> [-1, 1] (align_corners)
    grid = grid.flip(0).permute(1, 2, 3, 0)[None]  # grid_sample wants (x, y, z) = (last axis, ..., first)
    with torch.no_grad():
        out = torch.nn.functional.grid_sample(stacked, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return [channel.numpy() for channel in out[0]]


def apply_contrast(image: np.ndarray, *, gamma: float, reference: float) -> np.ndarray:
    """A scanner's contrast curve: I -> reference * (I / reference) ** gamma."""
    positive = np.maximum(image, 0) / np.float32(reference)
    return (np.power(positive, np.float32(gamma)) * np.float32(reference)).astype(np.float32)


def add_rician_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of a complex signal with Gaussian noise in both channels: Rician, as MR magnitude images are."""
    real = image + rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma)
    imag = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma)
    return np.sqrt(real * real + imag * imag)
