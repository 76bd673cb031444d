"""The geometry between a 3D volume and its stack of square 2D slices, both ways.

One object, ``SliceGeometry``, holds everything needed to cut a volume into slices and to put per-slice
2D maps (Grad-CAM, attention) back on the source voxel grid:

* the volume is in canonical RAS orientation (``nibabel.as_closest_canonical``), so voxel axis 0 runs
  left to right, axis 1 posterior to anterior, axis 2 inferior to superior;
* slices are taken along ``axis``; the two remaining voxel axes, in increasing order, are the in-plane
  axes ``(a, b)``. A slice is shown the way radiologists look at it: image rows run along ``b``
  *reversed* (superior at the top for sagittal and coronal slices, anterior at the top for axial ones)
  and image columns run along ``a``. So ``image = plane.T[::-1]`` where ``plane = volume.take(s, axis)``;
* the image (``plane_shape = (n_b, n_a)`` rows x columns) is zero-padded, centred, to a square of side
  ``padded = max(n_a, n_b)`` (the whole brain stays in the picture; nothing is cropped), then resized to
  ``size x size`` with bilinear interpolation (pixel centres aligned, ``align_corners=False``), antialiased
  when shrinking: PyTorch's ``F.interpolate(mode="bilinear", antialias=...)``, which ``resize_stack`` calls.

Written here rather than taken from a library because no library records this mapping in both
directions: torchvision/open_clip transforms are one-way and crop. The resize is separable and linear,
so it is a matrix product ``R X R^T`` (``resize_matrix``): the slicing jobs resize with it in numpy and
never import torch (2.5-3 s of every job); ``resize_stack`` stays PyTorch's own, and the tests hold the
two equal.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where resize_stack runs only: the slicing jobs never load it
    import torch

GEOMETRY_VERSION = 1


def _in_plane_axes(axis: int) -> tuple[int, int]:
    a, b = (ax for ax in range(3) if ax != axis)
    return a, b


def resize_stack(stack: "np.ndarray | torch.Tensor", size: int) -> "torch.Tensor":
    """Bilinear resize of an (n, h, w) stack of square images to (n, size, size): a float32 torch tensor,
    by PyTorch's ``F.interpolate`` (the reference that ``resize_matrix`` reproduces).

    When shrinking, ``antialias=True`` low-pass filters first (no aliasing); when enlarging, antialiasing
    changes nothing (< 1e-6) but costs three times as long, so it is off.
    """
    import torch
    import torch.nn.functional as F

    tensor = torch.as_tensor(np.ascontiguousarray(stack) if isinstance(stack, np.ndarray) else stack)
    tensor = tensor.to(torch.float32)
    if tensor.shape[-1] == size and tensor.shape[-2] == size:
        return tensor.clone()
    shrinking = size < max(tensor.shape[-2:])
    return F.interpolate(tensor[:, None], size=(size, size), mode="bilinear", align_corners=False,
                         antialias=shrinking)[:, 0]


@functools.cache
def resize_matrix(length: int, size: int) -> np.ndarray:
    """R (size, length), float32, such that ``resize_stack`` of a square (length, length) image X is
    R @ X @ R.T (equal to float rounding; tests/test_geometry.py). Each row holds the weights PyTorch gives
    one output pixel, computed as its kernels do: shrinking, the triangle filter widened by the scale and
    normalised over the input pixels it covers (PIL's antialiasing); enlarging, plain bilinear weights
    with source coordinate (i + 0.5) * scale - 0.5 clamped at 0. Read-only (cached)."""
    matrix = np.zeros((size, length), np.float64)
    scale = np.float32(length) / np.float32(size)  # in float32, as PyTorch computes it for float32 images
    centres = scale * (np.arange(size, dtype=np.float32) + np.float32(0.5))
    if size == length:
        matrix[np.arange(size), np.arange(size)] = 1.0
    elif size < length:
        for row, centre in enumerate(centres):
            start, stop = max(int(centre - scale + 0.5), 0), min(int(centre + scale + 0.5), length)
            weights = np.clip(1.0 - np.abs((np.arange(start, stop) - centre + 0.5) / scale), 0.0, None)
            matrix[row, start:stop] = weights / weights.sum()
    else:
        source = np.maximum(centres - np.float32(0.5), np.float32(0.0))
        first = np.minimum(source.astype(int), length - 1)
        second = np.minimum(first + 1, length - 1)
        fraction = source - first
        np.add.at(matrix, (np.arange(size), first), 1.0 - fraction)
        np.add.at(matrix, (np.arange(size), second), fraction)
    matrix = matrix.astype(np.float32)
    matrix.setflags(write=False)
    return matrix


def resize_square(stack: np.ndarray, size: int) -> np.ndarray:
    """``resize_stack`` in numpy: an (n, h, h) stack to float32 (n, size, size) as R X R^T."""
    stack = np.asarray(stack, dtype=np.float32)
    matrix = resize_matrix(stack.shape[-1], size)
    return np.matmul(np.matmul(matrix, stack), matrix.T)


@dataclass(frozen=True)
class SliceGeometry:
    """How the slices of one subject sit in its source volume (see the module docstring)."""

    axis: int
    size: int
    source_shape: tuple[int, int, int]
    source_affine: tuple[tuple[float, ...], ...]  # 4x4, canonical RAS voxel -> world millimetres
    kept_indices: tuple[int, ...]
    dropped_indices: tuple[int, ...] = ()
    version: int = GEOMETRY_VERSION

    # ---- derived quantities ----------------------------------------------------------------------
    @property
    def in_plane_axes(self) -> tuple[int, int]:
        """(a, b): the voxel axes along image columns (a) and, reversed, image rows (b)."""
        return _in_plane_axes(self.axis)

    @property
    def plane_shape(self) -> tuple[int, int]:
        """(rows, columns) of a slice image before padding: (n_b, n_a)."""
        a, b = self.in_plane_axes
        return self.source_shape[b], self.source_shape[a]

    @property
    def padded(self) -> int:
        return max(self.plane_shape)

    @property
    def pad_top(self) -> int:
        return (self.padded - self.plane_shape[0]) // 2

    @property
    def pad_left(self) -> int:
        return (self.padded - self.plane_shape[1]) // 2

    @property
    def scale(self) -> float:
        """Output pixels per padded-image pixel (voxel)."""
        return self.size / self.padded

    @property
    def n_kept(self) -> int:
        return len(self.kept_indices)

    @property
    def affine(self) -> np.ndarray:
        return np.asarray(self.source_affine, dtype=float)

    # ---- construction and storage ---------------------------------------------------------------
    @classmethod
    def create(cls, *, axis: int, size: int, source_shape, source_affine, kept_indices,
               dropped_indices=()) -> "SliceGeometry":
        if axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
        shape = tuple(int(n) for n in source_shape)
        if len(shape) != 3:
            raise ValueError(f"source_shape must be 3D, got {shape}")
        affine = np.asarray(source_affine, dtype=float)
        if affine.shape != (4, 4):
            raise ValueError(f"source_affine must be 4x4, got {affine.shape}")
        kept = tuple(int(i) for i in kept_indices)
        if any(not 0 <= i < shape[axis] for i in kept) or len(set(kept)) != len(kept) or list(kept) != sorted(kept):
            raise ValueError(f"kept_indices must be increasing, unique and within 0..{shape[axis] - 1}")
        return cls(axis=int(axis), size=int(size), source_shape=shape,
                   source_affine=tuple(tuple(float(x) for x in row) for row in affine),
                   kept_indices=kept, dropped_indices=tuple(int(i) for i in dropped_indices))

    def to_dict(self) -> dict:
        out = asdict(self)
        out["source_shape"] = list(self.source_shape)
        out["source_affine"] = [list(row) for row in self.source_affine]
        out["kept_indices"] = list(self.kept_indices)
        out["dropped_indices"] = list(self.dropped_indices)
        # Derived values are written too, for people and other tools reading the JSON.
        out.update(in_plane_axes=list(self.in_plane_axes), plane_shape=list(self.plane_shape),
                   padded=self.padded, pad_top=self.pad_top, pad_left=self.pad_left, scale=self.scale,
                   image_orientation="image = volume.take(index, axis).T[::-1], zero-padded centred to "
                                     "padded x padded, bilinear resize to size x size (align_corners=False)")
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "SliceGeometry":
        geometry = data.get("geometry", data)  # accept the whole slices JSON or its geometry part
        return cls.create(axis=geometry["axis"], size=geometry["size"], source_shape=geometry["source_shape"],
                          source_affine=geometry["source_affine"], kept_indices=geometry["kept_indices"],
                          dropped_indices=geometry.get("dropped_indices", ()))

    @classmethod
    def from_json(cls, path: str | Path) -> "SliceGeometry":
        with open(path) as handle:
            return cls.from_dict(json.load(handle))

    # ---- forward: volume -> slices --------------------------------------------------------------
    def plane_images(self, volume: np.ndarray, indices=None) -> np.ndarray:
        """The unpadded, unresized slice images (n, n_b, n_a) at ``indices`` (default: the kept ones)."""
        volume = np.asarray(volume)
        if volume.shape != self.source_shape:
            raise ValueError(f"volume shape {volume.shape} is not the geometry's source shape {self.source_shape}")
        return np.ascontiguousarray(self._oriented(volume, self.kept_indices if indices is None else indices))

    def _oriented(self, volume: np.ndarray, indices) -> np.ndarray:
        """The (n, n_b reversed, n_a) stack of the slices at ``indices``: a view for a contiguous run of indices."""
        if isinstance(indices, range) or (len(indices) and list(indices) == list(range(indices[0], indices[-1] + 1))):
            stack = np.moveaxis(volume, self.axis, 0)[indices[0]:indices[-1] + 1]  # contiguous run: a view
        else:
            stack = np.moveaxis(volume, self.axis, 0)[list(indices)]  # (n, n_a, n_b)
        return np.swapaxes(stack, 1, 2)[:, ::-1, :]  # (n, n_b reversed, n_a)

    def pad_square(self, images: np.ndarray) -> np.ndarray:
        rows, cols = self.plane_shape
        out = np.zeros((images.shape[0], self.padded, self.padded), dtype=images.dtype)
        inner = out[:, self.pad_top:self.pad_top + rows, self.pad_left:self.pad_left + cols]
        # ``images`` is usually a transposed view of a Fortran-ordered volume; copying a few rows at a time
        # keeps the source cache lines in cache across slices (2x faster than one assignment).
        for row in range(0, rows, 8):
            inner[:, row:row + 8] = images[:, row:row + 8]
        return out

    def slices_from_volume(self, volume: np.ndarray) -> np.ndarray:
        """Cut the kept slices out of a source-shaped volume: float32 (n_kept, size, size)."""
        return self.resize(self.padded_planes(np.asarray(volume, dtype=np.float32)))

    def padded_planes(self, volume: np.ndarray) -> np.ndarray:
        """The kept slices oriented and zero-padded to (n_kept, padded, padded), not yet resized, in the
        volume's dtype: one strided copy (a view of the kept slices written into the padded square)."""
        volume = np.asarray(volume)
        if volume.shape != self.source_shape:
            raise ValueError(f"volume shape {volume.shape} is not the geometry's source shape {self.source_shape}")
        return self.pad_square(self._oriented(volume, self.kept_indices))

    def fill_padded(self, out: np.ndarray, volume: np.ndarray, source_axis: int, start: int, stop: int) -> None:
        """Copy into ``out`` (laid out as ``padded_planes`` returns, zero padding included) the part of the
        kept slices that comes from voxels ``start..stop-1`` along ``source_axis`` of ``volume``: the slices
        themselves when ``source_axis`` is the slicing axis, else a band of rows or columns. Filling every
        range of one axis gives ``padded_planes(volume)``; a volume still being read can be cut as it arrives."""
        volume = np.asarray(volume)
        if volume.shape != self.source_shape:
            raise ValueError(f"volume shape {volume.shape} is not the geometry's source shape {self.source_shape}")
        rows, cols = self.plane_shape
        inner = out[:, self.pad_top:self.pad_top + rows, self.pad_left:self.pad_left + cols]
        part = [slice(None)] * 3
        part[source_axis] = slice(start, stop)
        band = volume[tuple(part)]
        a, b = self.in_plane_axes
        if source_axis == self.axis:
            first, last = np.searchsorted(self.kept_indices, [start, stop])
            if last > first:
                inner[first:last] = self._oriented(band, [i - start for i in self.kept_indices[first:last]])
        elif source_axis == b:  # image rows run along b reversed
            inner[:, rows - stop:rows - start] = self._oriented(band, self.kept_indices)
        else:
            inner[:, :, start:stop] = self._oriented(band, self.kept_indices)

    def resize(self, padded: np.ndarray) -> np.ndarray:
        """Padded planes (n, padded, padded) to the output size: float32 (n, size, size)."""
        return resize_square(padded, self.size)

    # ---- backward: slices -> volume -------------------------------------------------------------
    def to_volume(self, maps: np.ndarray) -> np.ndarray:
        """Put per-slice maps (n_kept, H, W) back on the source grid: float32, zeros at dropped slices.

        Maps of any square size H = W (e.g. the 224 x 224 input or an upsampled 14 x 14 Grad-CAM) are
        resized to the padded square, un-padded and placed at the kept slice indices.
        """
        maps = np.asarray(maps)
        if maps.ndim != 3 or maps.shape[0] != self.n_kept or maps.shape[1] != maps.shape[2]:
            raise ValueError(f"maps must have shape ({self.n_kept}, H, H) (one square map per kept slice), "
                             f"got {maps.shape}")
        square = resize_square(maps, self.padded)
        rows, cols = self.plane_shape
        images = square[:, self.pad_top:self.pad_top + rows, self.pad_left:self.pad_left + cols]
        planes = np.swapaxes(images[:, ::-1, :], 1, 2)  # (n, n_a, n_b)
        volume = np.zeros(self.source_shape, dtype=np.float32)
        np.moveaxis(volume, self.axis, 0)[list(self.kept_indices)] = planes
        return volume

    def pixel_to_voxel(self, slice_pos: int, row: float, col: float) -> tuple[float, float, float]:
        """Continuous voxel coordinates (i, j, k) on the source grid of output pixel (row, col) of the
        ``slice_pos``-th kept slice (pixel centres at integer coordinates)."""
        if not 0 <= slice_pos < self.n_kept:
            raise IndexError(f"slice_pos {slice_pos} outside 0..{self.n_kept - 1}")
        # Bilinear resize with align_corners=False: output pixel centre x <-> input (x + 0.5) / scale - 0.5.
        image_row = (row + 0.5) / self.scale - 0.5 - self.pad_top
        image_col = (col + 0.5) / self.scale - 0.5 - self.pad_left
        a, b = self.in_plane_axes
        voxel = [0.0, 0.0, 0.0]
        voxel[self.axis] = float(self.kept_indices[slice_pos])
        voxel[a] = float(image_col)
        voxel[b] = float(self.source_shape[b] - 1 - image_row)
        return tuple(voxel)

    def voxel_to_pixel(self, i: float, j: float, k: float) -> tuple[int | None, float, float]:
        """Inverse of ``pixel_to_voxel``: (slice_pos or None when the slice was dropped, row, col)."""
        voxel = (i, j, k)
        a, b = self.in_plane_axes
        index = int(round(voxel[self.axis]))
        slice_pos = self.kept_indices.index(index) if index in self.kept_indices else None
        image_row = self.source_shape[b] - 1 - voxel[b]
        image_col = voxel[a]
        row = (image_row + self.pad_top + 0.5) * self.scale - 0.5
        col = (image_col + self.pad_left + 0.5) * self.scale - 0.5
        return slice_pos, float(row), float(col)

    def pixel_to_world(self, slice_pos: int, row: float, col: float) -> np.ndarray:
        """World (e.g. MNI) millimetre coordinates of an output pixel."""
        return (self.affine @ np.array([*self.pixel_to_voxel(slice_pos, row, col), 1.0]))[:3]
