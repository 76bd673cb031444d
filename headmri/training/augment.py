"""Training-time augmentation of slice batches (config ``training.augment``).

``affine``: each training slice is rotated, scaled and shifted by its own small random amounts (a 2D
affine resampling with ``torch.nn.functional.affine_grid`` / ``grid_sample``, bilinear, zeros outside,
which is the background of a masked brain slice). It applies to training batches only; validation,
test and explanations see the slices as they are. Intensities are not changed by it: the effects a model has
to find are local intensity changes. ``erase``: cutout, one random square per slice (half of them) set to
the background (``RandomErase``). ``intensity``: a gamma, a smooth multiplicative field and a gain per slice
(``IntensityJitter``), the only one that changes intensities.

Why (docs/training.md, "The demo recipe"): trained on every slice of 6 + 6 subjects, the demo CNN fits
its training subjects to a loss of 0.05-0.1 in 12 epochs, which includes slices that carry no effect
(a one-hemisphere effect is in half the sagittal slices of a patient, all labelled patient); what it
memorises there decides the test subjects as much as the effect does. Small geometric jitter makes that
memorising harder without hiding a regional effect (a few millimetres against regions of centimetres).

The random numbers come from torch's default generator of the batch's device, which the training job
seeds from ``training.seed`` and the resume file saves and restores, so runs stay reproducible and a
resumed run draws what an uninterrupted one would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from headmri.config import AUGMENTATIONS


@dataclass(frozen=True)
class AffineJitter:
    """Per-slice rotation up to ``rotate_deg``, isotropic scaling by up to ``scale`` (fraction) and a
    shift up to ``shift`` of the slice width in each direction."""

    rotate_deg: float = 8.0
    scale: float = 0.05
    shift: float = 0.06

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C, S, S) -> the same shape, each item moved by its own draw."""
        n = x.shape[0]

        def uniform(bound: float) -> torch.Tensor:
            return (torch.rand(n, device=x.device) * 2 - 1) * bound

        angle = uniform(math.radians(self.rotate_deg))
        factor = 1 + uniform(self.scale)
        shift_x, shift_y = uniform(2 * self.shift), uniform(2 * self.shift)  # grid units: the slice spans [-1, 1]
        cos, sin = factor * torch.cos(angle), factor * torch.sin(angle)
        theta = torch.stack([torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1)
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@dataclass(frozen=True)
class RandomErase:
    """Cutout (DeVries and Taylor 2017): with probability ``p`` a slice gets one square of side ``size`` (a
    fraction of the slice width), at a random place, set to 0, the background of a masked brain slice.

    Why (docs/training.md, "The demo recipe"): a model that has found one planted region can fit its training
    subjects without looking at a second one, and then no explanation of it shows the second; hiding a
    random part of some slices makes evidence elsewhere in the slice pay during training."""

    size: float = 0.3
    p: float = 0.5

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C, S, S) -> a copy, each item with or without its own square."""
        n, width = x.shape[0], x.shape[-1]
        side = max(1, round(self.size * width))
        top, left = torch.randint(0, width - side + 1, (2, n), device=x.device)
        erased = torch.rand(n, device=x.device) < self.p
        rows = torch.arange(width, device=x.device)
        inside_rows = (rows[None] >= top[:, None]) & (rows[None] < top[:, None] + side)  # (B, S)
        inside_cols = (rows[None] >= left[:, None]) & (rows[None] < left[:, None] + side)
        square = inside_rows[:, :, None] & inside_cols[:, None, :] & erased[:, None, None]
        return x.masked_fill(square[:, None], 0.0)


@dataclass(frozen=True)
class IntensityJitter:
    """Per slice: a gamma ``exp(U(-gamma, gamma))``, a smooth multiplicative field ``exp(field * N(0, 1))`` drawn
    on a ``grid`` x ``grid`` lattice and upsampled (bicubic), and a gain ``U(1 - gain, 1 + gain)``; the background
    (0) stays 0. Written here in a few torch operations on the whole batch on its device: MONAI's RandBiasField
    and RandAdjustContrast do the like one image at a time, and MONAI is not a dependency of ours.

    Why (docs/training.md, "Intensity jitter"): the demo's subjects differ in bias field, contrast and noise as
    well as in the planted effect, and from 6-7 training subjects per class the CNN learns those too; a held-out
    control whose bias field or contrast resembles the training patients' then scores as a patient. Jitter of
    that kind, smooth over about a quarter of the slice, makes them useless to learn, while a planted region's
    local change keeps its contrast to its surroundings. Measured on the two demo cohorts that miss (2026-12-03):
    through the workflow no better than none (near-tie folds decided the other way), so not the default."""

    gamma: float = 0.3
    field: float = 0.1
    grid: int = 4
    gain: float = 0.1

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C, S, S) in 0..1 -> the same shape, each item with its own draw."""
        n, size = x.shape[0], x.shape[-2:]
        shape = (n, 1, 1, 1)
        gamma = torch.exp((torch.rand(shape, device=x.device) * 2 - 1) * self.gamma)
        field = torch.exp(self.field * torch.randn(n, 1, self.grid, self.grid, device=x.device))
        field = F.interpolate(field, size=tuple(size), mode="bicubic", align_corners=False)
        gain = 1 + (torch.rand(shape, device=x.device) * 2 - 1) * self.gain
        return x.clamp(min=0).pow(gamma.to(x.dtype)) * (field * gain).to(x.dtype)


AUGMENTS = {"none": lambda: None, "affine": AffineJitter, "erase": RandomErase, "intensity": IntensityJitter}


def make_augment(name: str) -> AffineJitter | RandomErase | IntensityJitter | None:
    """The augmentation ``training.augment`` names (``None`` for ``none``)."""
    if name in AUGMENTS:
        return AUGMENTS[name]()
    raise ValueError(f"training.augment must be one of {list(AUGMENTATIONS)}, got {name!r}")
