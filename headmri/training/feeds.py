"""How each kind of model input (``headmri.model_inputs``) is fed to a training job: its checks, its
loaders, its augmentation and what its predictions record. ``feed_for`` picks the feed from the
``ModelInput`` an encoder takes, so the job itself never asks whether a model takes slices or volumes;
a new kind of input is a new class here and a line in ``FEEDS``.

- ``SliceFeed``: slice arrays (``sub-X_size-S_slices.npy``, n x S x S, with the geometry JSON beside them): the
  encoder's input size is checked against the slices' size, training batches are jittered
  (``training.augment``), predictions record each slice's position in the volume.
- ``VolumeFeed``: MNI-space brains (NIfTI) for the 3D baseline, read once, downsampled to its voxel size
  and cached; no jitter; one prediction per subject.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from headmri.config import TrainingConfig
from headmri.errors import ConfigError, InputError
from headmri.model_inputs import SLICES, VOLUMES, ModelInput
from headmri.slices.reference import BatchReference, ControlReference, read_geometry
from headmri.training.augment import make_augment


def geometry_json(npy: Path) -> Path:
    """The slice array's JSON (``sub-X_slices.npy`` -> ``sub-X_slices.json``)."""
    return npy.with_suffix(".json")


@dataclass(frozen=True)
class Batches:
    """What a loader is built from: the rows' files and classes, and how the job runs."""

    paths: list[Path]
    labels: list[int]
    subjects: list[str]
    training: TrainingConfig
    device: torch.device
    reference: ControlReference | None = None  # training.reference: controls (slices only)


class SliceFeed:
    """Slice arrays with their geometry JSON (every encoder but the 3D baseline); each JSON read once."""

    spec = SLICES

    def __init__(self):
        self._kept: dict[Path, tuple[int, ...]] = {}

    def _kept_of(self, pid: str, path: Path) -> tuple[int, ...]:
        """The subject's kept slice positions, from its geometry JSON (read once per job)."""
        if path not in self._kept:
            self._kept[path] = tuple(read_geometry(geometry_json(path), subject=pid).kept_indices)
        return self._kept[path]

    def check_size(self, encoder: str, input_size: int, slice_size: int | None) -> None:
        if slice_size is not None and int(slice_size) != input_size:
            raise ConfigError(
                f"the source's slice size is {slice_size} but encoder {encoder!r} takes {input_size}x{input_size} slices; "
                "set the source's size (sources[].size, or slices.size) to null: each encoder then gets slices of its own size"
            )

    def check_file(self, pid: str, path: Path, input_size: int) -> None:
        """Header only: an (n, size, size) array, with its geometry JSON (every subject is scored after
        training, and the control reference reads the slice positions)."""
        try:
            shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
        except (OSError, ValueError) as exc:
            raise InputError(f"not a readable .npy slice array ({exc})", subject=pid, path=path) from exc
        if len(shape) != 3 or shape[1:] != (input_size, input_size):
            raise InputError(
                f"slices are {'x'.join(map(str, shape[1:]))} but the encoder takes {input_size}x{input_size}; slice "
                f"at its size (sources[].size and slices.size null, or {input_size}) and rebuild the slices (resizing "
                "here would break the slice geometry Grad-CAM maps back with)",
                subject=pid, path=path,
            )
        if not geometry_json(path).is_file():
            raise InputError("the slice array has no geometry JSON beside it", subject=pid, path=geometry_json(path))

    def loader(self, batches: Batches, *, train: bool, seed: int):
        from headmri.slices.loader import SliceBatchLoader

        training = batches.training
        if train and training.objective == "mil":
            from headmri.training.mil import MilBatchLoader

            mil = training.mil
            return MilBatchLoader(
                batches.paths, batches.labels, controls_per_step=training.batch_size, bags_per_step=mil.bags_per_step,
                bag_slices=mil.bag_slices, seed=seed, max_slices_per_subject=training.max_slices_per_subject,
                device=batches.device, reference=self._reference(batches),
            )
        return SliceBatchLoader(
            batches.paths, batches.labels, training.batch_size, shuffle=train, seed=seed,
            max_slices_per_subject=training.max_slices_per_subject if train else None,
            device=batches.device, with_slice_index=not train, reference=self._reference(batches),
        )

    def loss(self, training: TrainingConfig):
        """The training loss for ``training.objective``: None (cross-entropy per slice) or the MIL loss."""
        if training.objective != "mil":
            return None
        from headmri.training.mil import MilLoss

        return MilLoss(controls=training.batch_size, bags=training.mil.bags_per_step, bag_slices=training.mil.bag_slices)

    def _reference(self, batches: Batches) -> BatchReference | None:
        """The loader's control reference: each subject's slice positions (its geometry JSON) and scale."""
        if batches.reference is None:
            return None
        return batches.reference.for_loader([(pid, self._kept_of(pid, path))
                                             for pid, path in zip(batches.subjects, batches.paths)])

    def control_reference(self, files: Mapping[str, Path], controls: Sequence[str]) -> ControlReference:
        """``training.reference: controls``: the mean slices of the fold's training ``controls``."""
        return ControlReference.of_controls({pid: (files[pid], geometry_json(files[pid])) for pid in controls})

    def augment(self, training: TrainingConfig):
        return make_augment(training.augment)

    def kept_indices(self, files: Mapping[str, Path], pids: Sequence[str]) -> dict[str, list[int]]:
        """Each subject's kept slice positions (its geometry JSON), recorded with its slice predictions."""
        return {pid: list(self._kept_of(pid, files[pid])) for pid in pids}


@dataclass
class VolumeFeed:
    """MNI-space brains for the 3D baseline, resampled to ``voxel_size_mm``; each read once (``cache``)."""

    voxel_size_mm: float
    cache: dict[str, np.ndarray] = field(default_factory=dict)
    spec = VOLUMES

    def check_size(self, encoder: str, input_size: int, slice_size: int | None) -> None:
        """Volumes are resampled to the model's grid: no size to agree on."""

    def check_file(self, pid: str, path: Path, input_size: int) -> None:
        """Header only: a readable NIfTI on the MNI template grid."""
        import nibabel as nib  # only the 3D baseline reads NIfTI

        from headmri.models.resnet3d import TEMPLATE_SHAPE

        try:
            shape = tuple(nib.load(str(path)).shape[:3])
        except Exception as exc:  # any reader error: not a readable NIfTI
            raise InputError(f"cannot read the MNI-space brain ({exc})", subject=pid, path=path) from exc
        if shape != TEMPLATE_SHAPE:
            raise InputError(f"the brain is {shape}, not on the MNI template grid {TEMPLATE_SHAPE}", subject=pid, path=path)

    def loader(self, batches: Batches, *, train: bool, seed: int):
        from headmri.training.volumes import VolumeBatchLoader

        return VolumeBatchLoader(
            batches.paths, batches.labels, batches.training.batch_size, shuffle=train, seed=seed,
            voxel_size_mm=self.voxel_size_mm, subjects=batches.subjects, device=batches.device,
            with_slice_index=not train, cache=self.cache,
        )

    def augment(self, training: TrainingConfig):
        return None  # the 3D baseline is not jittered

    def loss(self, training: TrainingConfig):
        return None  # one volume per subject: nothing to pool (BaselineConfig.training sets objective slices)

    def kept_indices(self, files: Mapping[str, Path], pids: Sequence[str]) -> None:
        return None  # one prediction per subject

    def control_reference(self, files: Mapping[str, Path], controls: Sequence[str]) -> None:
        return None  # whole volumes: no slice reference (BaselineConfig.training sets none)


FEEDS = {SLICES.kind: lambda voxel_size_mm: SliceFeed(), VOLUMES.kind: VolumeFeed}


def feed_for(spec: ModelInput, voxel_size_mm: float) -> SliceFeed | VolumeFeed:
    """The feed of a model input (``voxel_size_mm``: the volume baseline's grid)."""
    return FEEDS[spec.kind](voxel_size_mm)


def check_files(feed, files: Mapping[str, Path], input_size: int) -> None:
    """Headers only, for every subject (test ones included: a bad file should fail now, not after training)."""
    for pid, path in files.items():
        feed.check_file(pid, path, input_size)


def rows_batches(rows: pd.DataFrame, files: Mapping[str, Path], training: TrainingConfig,
                 device: torch.device, reference: ControlReference | None = None) -> Batches:
    pids = list(rows["participant_id"])
    return Batches([files[pid] for pid in pids], rows["class_index"].astype(int).tolist(), pids, training, device,
                   reference)
