"""The fold's control reference (``training.reference: controls``, docs/training.md "The control reference").

With it the model does not see a slice but how the slice departs from the fold's *training controls*: the
slice minus their mean slice at the same position along the slicing axis (the slice cut of their mean
image; a control without a slice at a position counts as an empty slice there). Anatomy that every brain
shares cancels, and what is left is what differs between subjects: the planted or disease effect, and
each subject's own warp, bias field and noise. Validation and test subjects never enter the mean.

**Leave one out.** A training control is part of the mean it is compared with, so its difference would be
shrunk (its own noise is 1/n of the mean) and a model could learn "small difference = control" from the
training controls, which no held-out control shows. Each training control is compared with the mean of
the other n - 1 instead, which is exactly ``n / (n - 1) * (x - mean)`` (x enters the mean with weight
1 / n), so one mean serves every subject and only the training controls' differences are scaled.

The same mean is the neutral image of region occlusion (headmri.explain.occlusion), which this module
also serves: ``control_mean_slices``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from headmri.errors import InputError
from headmri.slices.geometry import SliceGeometry


def same_slicing(geometry: SliceGeometry, other: SliceGeometry) -> bool:
    """Do two subjects' slices come from the same grid cut the same way (kept slices aside)?"""
    return (geometry.axis == other.axis and geometry.size == other.size and geometry.source_shape == other.source_shape
            and np.allclose(geometry.affine, other.affine, atol=1e-3))


def read_grey_slices(path: str | Path, *, subject: str | None = None) -> np.ndarray:
    """A subject's stored slices as float32 (n, S, S) in 0..1 (the values the loader gives the model)."""
    from headmri.slices.extract import decode

    try:
        stored = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read the slices: {error}", subject=subject, path=path) from error
    if stored.ndim != 3 or stored.dtype not in (np.uint8, np.float16):
        raise InputError(f"slices must be an (n, S, S) uint8 or float16 array, got {stored.dtype} {stored.shape}",
                         subject=subject, path=path)
    return decode(np.asarray(stored))


def read_geometry(path: str | Path, *, subject: str | None = None) -> SliceGeometry:
    """A subject's slice geometry JSON; an unreadable one is an error naming the subject and the file."""
    try:
        return SliceGeometry.from_json(path)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"cannot read the slice geometry: {error}", subject=subject, path=path) from error


def control_mean_slices(controls: Mapping[str, tuple[str | Path, str | Path]], like: SliceGeometry) -> np.ndarray:
    """The mean slice at every position along the slicing axis, (source_shape[axis], S, S) float32, over the
    ``controls`` given (participant ID -> (slices .npy, geometry .json)); a control without a slice at a
    position counts as an empty slice there. Every control must be cut like ``like``."""
    if not controls:
        raise InputError("the control reference (region occlusion's neutral image, training.reference: controls) "
                         "needs at least one training control in the fold")
    n_positions = like.source_shape[like.axis]
    total = np.zeros((n_positions, like.size, like.size), dtype=np.float64)
    for pid, (slices_path, geometry_path) in controls.items():
        geometry = read_geometry(geometry_path, subject=pid)
        if not same_slicing(geometry, like):
            raise InputError("the control's slices were not cut from the same grid the same way as the patients' "
                             f"(axis, size, grid shape and affine must agree; {geometry.axis}/{geometry.size}/"
                             f"{geometry.source_shape} against {like.axis}/{like.size}/{like.source_shape})",
                             subject=pid, path=geometry_path)
        slices = read_grey_slices(slices_path, subject=pid)
        if slices.shape != (geometry.n_kept, like.size, like.size):
            raise InputError(f"the slice array is {slices.shape}, its geometry keeps {geometry.n_kept} slices of "
                             f"{like.size} x {like.size}", subject=pid, path=slices_path)
        total[list(geometry.kept_indices)] += slices
    return (total / len(controls)).astype(np.float32)


@dataclass(frozen=True)
class ControlReference:
    """The mean slices of a fold's training controls (``mean``, one per position) and who they are."""

    mean: np.ndarray
    controls: frozenset[str]

    @classmethod
    def of_controls(cls, controls: Mapping[str, tuple[str | Path, str | Path]]) -> "ControlReference":
        """From the training controls' (slices .npy, geometry .json), the first one's slicing the norm."""
        if not controls:
            raise InputError("the control reference needs at least one training control in the fold")
        first, (_, geometry) = next(iter(controls.items()))
        return cls(control_mean_slices(controls, read_geometry(geometry, subject=first)), frozenset(controls))

    def scale(self, pid: str) -> float:
        """n / (n - 1) for a training control (leave one out, module docstring), 1 for everyone else."""
        n = len(self.controls)
        return n / (n - 1) if pid in self.controls and n > 1 else 1.0

    def positions(self, pid: str, kept_indices: Sequence[int]) -> np.ndarray:
        """The subject's slice positions (its geometry's kept indices), checked against the mean's."""
        positions = np.asarray(kept_indices, dtype=np.int64)
        if positions.size and (positions.min() < 0 or positions.max() >= self.mean.shape[0]):
            raise InputError(f"the subject's slice positions run past the reference's {self.mean.shape[0]} positions "
                             "(slices cut from another grid)", subject=pid)
        return positions

    def apply(self, grey: torch.Tensor, pid: str, kept_indices: Sequence[int]) -> torch.Tensor:
        """One subject's grey slices (n, 1, S, S), all of them, as the model takes them (in place)."""
        rows = torch.from_numpy(self.mean[self.positions(pid, kept_indices)]).to(grey.device)
        grey[:, 0].sub_(rows).mul_(self.scale(pid))
        return grey

    def for_loader(self, subjects: Sequence[tuple[str, Sequence[int]]]) -> "BatchReference":
        """The reference of a loader's subjects, given in its order as (participant ID, kept indices)."""
        return BatchReference(self.mean, [self.positions(pid, kept) for pid, kept in subjects],
                              [self.scale(pid) for pid, _ in subjects])


class BatchReference:
    """The reference of a loader's subjects: ``apply`` turns a batch of their grey slices into differences
    from the controls' mean, in place, on the batch's device (the mean is moved there once)."""

    def __init__(self, mean: np.ndarray, positions: Sequence[np.ndarray], scales: Sequence[float]):
        self.mean = mean
        self.starts = np.concatenate([[0], np.cumsum([len(p) for p in positions])[:-1]]).astype(np.int64)
        self.flat = np.concatenate(list(positions)).astype(np.int64) if len(positions) else np.zeros(0, np.int64)
        self.scales = np.asarray(scales, dtype=np.float32)
        self._on: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def apply(self, grey: torch.Tensor, subject: np.ndarray, slice_: np.ndarray) -> torch.Tensor:
        """``grey`` (B, 1, S, S): slice ``slice_[i]`` of loader subject ``subject[i]``."""
        if grey.device not in self._on:
            self._on[grey.device] = (torch.from_numpy(self.mean).to(grey.device), torch.from_numpy(self.scales).to(grey.device))
        mean, scales = self._on[grey.device]
        positions = torch.from_numpy(self.flat[self.starts[subject] + slice_]).to(grey.device)
        index = torch.from_numpy(np.asarray(subject, dtype=np.int64)).to(grey.device)
        grey[:, 0].sub_(mean[positions]).mul_(scales[index][:, None, None])
        return grey
