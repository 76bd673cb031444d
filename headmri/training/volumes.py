"""Whole-volume inputs for the 3D baseline: MNI brains, downsampled and scaled, batched like the slices.

The baseline sees each subject once per epoch as one (1, D, H, W) volume, so its batches carry the same
(x, y, subject_index[, slice_index]) tuple as ``SliceBatchLoader`` and the training loop serves both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Mapping, Sequence

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F

from headmri.errors import InputError
from headmri.models.resnet3d import DEFAULT_VOXEL_SIZE_MM, TEMPLATE_SHAPE, volume_shape

PERCENTILES = (0.5, 99.5)


def load_volume(path: str | Path, meta: Mapping | float | None = None, *, subject: str | None = None) -> np.ndarray:
    """A brain on the MNI 1 mm grid -> float32 (1, D, H, W) at the model's voxel size, in [0, 1].

    Intensities are windowed per subject at robust percentiles of the brain (non-zero voxels), as the
    slices are, then averaged down to the model's grid (area interpolation: a box filter, no aliasing).
    ``meta`` is a trained model's metadata (``voxel_size_mm``) or the voxel size itself.
    """
    voxel = meta.get("voxel_size_mm", DEFAULT_VOXEL_SIZE_MM) if isinstance(meta, Mapping) else (meta or DEFAULT_VOXEL_SIZE_MM)
    try:
        image = nib.as_closest_canonical(nib.load(str(path)))
    except (FileNotFoundError, nib.filebasedimages.ImageFileError) as exc:
        raise InputError(f"cannot read the MNI-space brain ({exc})", subject=subject, path=path) from exc
    if tuple(image.shape) != TEMPLATE_SHAPE:
        raise InputError(f"the brain is {tuple(image.shape)}, not on the MNI template grid {TEMPLATE_SHAPE}",
                         subject=subject, path=path)
    data = np.asarray(image.dataobj, dtype=np.float32)
    brain = data[data != 0]
    if brain.size == 0 or not np.isfinite(brain).all():
        raise InputError("the brain is empty or holds NaN/infinite values", subject=subject, path=path)
    low, high = np.percentile(brain, PERCENTILES)
    if not high > low:
        raise InputError("the brain has no intensity contrast", subject=subject, path=path)
    scaled = np.where(data != 0, np.clip((data - low) / (high - low), 0.0, 1.0), 0.0).astype(np.float32)
    small = F.interpolate(torch.from_numpy(scaled)[None, None], size=volume_shape(float(voxel)), mode="area")
    return small[0].numpy()


class VolumeBatchLoader:
    """Batches (x float32 (B, 1, D, H, W), y int64, subject_index int64[, slice_index int64 = 0]).

    Volumes are read once and kept in memory as float16 (0.9 MB per subject at 2 mm). The order is a
    permutation drawn from (seed, epoch) when shuffling, so epochs are reproducible and resumable.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        labels: Sequence[int],
        batch_size: int,
        shuffle: bool,
        seed: int,
        *,
        voxel_size_mm: float = DEFAULT_VOXEL_SIZE_MM,
        subjects: Sequence[str] | None = None,
        device: str | torch.device | None = None,
        with_slice_index: bool = False,
        cache: dict[str, np.ndarray] | None = None,
    ):
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} volumes but {len(labels)} labels")
        self.labels = np.asarray(labels, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.with_slice_index = with_slice_index
        self.epoch = 0
        cache = {} if cache is None else cache  # shared across loaders: oversampled subjects are read once
        names = list(subjects) if subjects is not None else [None] * len(paths)
        self.volumes = []
        for path, name in zip(paths, names):
            key = str(path)
            if key not in cache:
                cache[key] = load_volume(path, voxel_size_mm, subject=name).astype(np.float16)
            self.volumes.append(cache[key])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return -(-len(self.volumes) // self.batch_size)

    @property
    def n_items(self) -> int:
        return len(self.volumes)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        epoch = self.epoch
        self.epoch += 1
        order = np.arange(len(self.volumes))
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(order)
        for start in range(0, order.size, self.batch_size):
            idx = order[start:start + self.batch_size]
            x = torch.from_numpy(np.stack([self.volumes[i] for i in idx])).to(self.device, torch.float32)
            y = torch.from_numpy(self.labels[idx]).to(self.device)
            batch = (x, y, torch.from_numpy(idx.copy()))
            yield batch + (torch.zeros(idx.size, dtype=torch.int64),) if self.with_slice_index else batch
