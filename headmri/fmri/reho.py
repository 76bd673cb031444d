"""ReHo: Kendall's coefficient of concordance W of each voxel's time series with its neighbours'.

For a voxel with m neighbourhood voxels inside the mask (itself included) and n time points, each
voxel's series is ranked over time (ties get their average rank), R_i is the sum over the m voxels of the
ranks at time i, and

    W = 12 * sum_i (R_i - m (n + 1) / 2)^2 / (m^2 (n^3 - n) - m * sum_j T_j),
    T_j = sum over the tie groups of voxel j of (t^3 - t),

the textbook W with the tie correction. Neighbourhoods: 27 (the 3x3x3 cube, the paper's), 19 (faces and
edges) or 7 (faces); voxels outside the mask are not neighbours, so edge voxels have smaller m, as in
REST/DPABI.

Written here, vectorised, because no maintained Python library computes ReHo on a grid (nilearn has
none; AFNI's 3dReHo is a binary): a Python loop over 50 000 brain voxels takes minutes. The trick: with
ranks centred on (n + 1) / 2, R_i - m (n + 1) / 2 is a plain sum of centred ranks over the neighbourhood,
i.e. a box filter over space applied to every time point at once (separable for the cube), and
centred half-integer ranks sum exactly in float32.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.stats import rankdata

from headmri.fmri.series import require_good

NEIGHBOURHOODS = (7, 19, 27)


def neighbourhood_offsets(size: int) -> list[tuple[int, int, int]]:
    """The (di, dj, dk) offsets of a 7-, 19- or 27-voxel neighbourhood (the centre included)."""
    if size not in NEIGHBOURHOODS:
        raise ValueError(f"the ReHo neighbourhood must be one of {NEIGHBOURHOODS} voxels, got {size}")
    cube = itertools.product((-1, 0, 1), repeat=3)
    # 7: at most one non-zero offset (faces), 19: at most two (faces and edges), 27: any
    most = {7: 1, 19: 2, 27: 3}[size]
    return [o for o in cube if sum(d != 0 for d in o) <= most]


def tie_term(series: np.ndarray) -> np.ndarray:
    """sum over tie groups of (t^3 - t) for each row of ``series`` (0 for a row without ties)."""
    ordered = np.sort(series, axis=1)
    rows, n = ordered.shape
    starts = np.ones((rows, n), dtype=bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    run = np.cumsum(starts.ravel()) - 1  # every row starts a new run, so runs never span rows
    sizes = np.bincount(run).astype(np.float64)
    run_row = np.repeat(np.arange(rows), starts.sum(axis=1))
    return np.bincount(run_row, weights=sizes ** 3 - sizes, minlength=rows)


def _box_sum(grid: np.ndarray) -> np.ndarray:
    """Sum over the 3x3x3 cube around each voxel (zero outside the grid), as three 1-D passes."""
    for axis in range(3):
        pad = [(0, 0)] * grid.ndim
        pad[axis] = (1, 1)
        padded = np.pad(grid, pad)
        length = grid.shape[axis]
        grid = sum(np.take(padded, np.arange(k, k + length), axis=axis) for k in range(3))
    return grid


def _offset_sum(grid: np.ndarray, offsets: list[tuple[int, int, int]]) -> np.ndarray:
    """Sum over the given offsets around each voxel (zero outside the grid)."""
    padded = np.pad(grid, [(1, 1)] * 3 + [(0, 0)] * (grid.ndim - 3))
    out = np.zeros_like(grid)
    i, j, k = grid.shape[:3]
    for di, dj, dk in offsets:
        out += padded[1 + di:1 + di + i, 1 + dj:1 + dj + j, 1 + dk:1 + dk + k]
    return out


def neighbourhood_sum(grid: np.ndarray, size: int = 27) -> np.ndarray:
    """Sum of ``grid`` (3-D or 4-D, space first) over each voxel's neighbourhood of ``size`` voxels."""
    return _box_sum(grid) if size == 27 else _offset_sum(grid, neighbourhood_offsets(size))


def _crop(mask: np.ndarray) -> tuple[slice, ...]:
    """The mask's bounding box with a one-voxel margin (the neighbourhood's reach)."""
    where = np.nonzero(mask)
    return tuple(slice(max(int(w.min()) - 1, 0), min(int(w.max()) + 2, n)) for w, n in zip(where, mask.shape))


def kendall_w(data: np.ndarray, mask: np.ndarray, size: int = 27) -> np.ndarray:
    """ReHo (Kendall's W, not normalised) of every mask voxel of ``data`` (x, y, z, time): a 3-D map, 0
    outside the mask. Raises ValueError when a mask voxel's series is constant or not finite."""
    mask = np.asarray(mask, dtype=bool)
    if data.ndim != 4 or data.shape[:3] != mask.shape:
        raise ValueError(f"data must be 4-D on the mask's grid {mask.shape}, got {data.shape}")
    if not mask.any():
        raise ValueError("the mask is empty")
    box = _crop(mask)
    mask_c = mask[box]
    series = np.asarray(data[box][mask_c], dtype=np.float64)
    require_good(series)
    n = series.shape[1]
    centred = np.zeros(mask_c.shape + (n,), dtype=np.float32)
    centred[mask_c] = rankdata(series, axis=1) - (n + 1) / 2.0
    ties = np.zeros(mask_c.shape, dtype=np.float64)
    ties[mask_c] = tie_term(series)
    rank_sums = neighbourhood_sum(centred, size)[mask_c]
    m = neighbourhood_sum(mask_c.astype(np.float64), size)[mask_c]
    tie_sums = neighbourhood_sum(ties, size)[mask_c]
    spread = np.einsum("ij,ij->i", rank_sums, rank_sums, dtype=np.float64)
    w = 12.0 * spread / (m ** 2 * (n ** 3 - n) - m * tie_sums)
    out = np.zeros(mask.shape, dtype=np.float64)
    out[box][mask_c] = w
    return out
