"""Percentiles near the ends of a large sample, equal to ``np.percentile`` (method "linear") bit for bit.

Why not ``np.percentile`` itself: it partitions the whole sample around six ranks (the two it needs for each
percentile plus the minimum and the maximum). For the 0.5th and 99.5th percentiles of the two million voxels
inside a brain that is 26 ms, the longest step of a slice cache build after inflating the brain. Only the
values at each end matter, so a strided sample places a bound beyond each wanted rank, one comparison pass
keeps the values past the bound, and only those are partitioned: the r-th smallest value of the whole array
is the r-th smallest of any subset that holds every value at or below it (and likewise from the top). When
a bound holds too few values, everything is partitioned, so the answer never depends on the sample. The
interpolation repeats numpy's own (``_lerp`` in ``numpy.lib._function_base_impl``); a test compares every
result with ``np.percentile``.
"""

from __future__ import annotations

import math

import numpy as np

# Values drawn to place the bounds; below this many values everything is partitioned directly.
_SAMPLE_SIZE = 1 << 15
# A bound sits this many binomial standard deviations of the sample count past the wanted rank, so it falls
# short (and everything is partitioned) only with a probability of about 3e-7.
_SPREAD = 5.0
# A tail longer than this fraction of the values saves too little over partitioning them all.
_MAX_TAIL = 0.1


def linear_percentiles(values: np.ndarray, percentiles) -> np.ndarray:
    """``np.percentile(values, percentiles)`` (method "linear") of a 1-D real array without NaN, as float64."""
    values = np.asarray(values)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"values must be a non-empty 1-D array, got shape {values.shape}")
    q = np.true_divide(np.atleast_1d(np.asarray(percentiles, dtype=np.float64)), 100)
    if not np.all((q >= 0) & (q <= 1)):
        raise ValueError(f"percentiles must lie in [0, 100], got {percentiles}")
    n = values.size
    virtual = (n - 1) * q
    previous = np.floor(virtual).astype(np.intp)
    following = np.minimum(previous + 1, n - 1)
    found = _order_statistics(values, np.unique(np.concatenate([previous, following])))
    a = np.array([found[r] for r in previous.tolist()], dtype=values.dtype)
    b = np.array([found[r] for r in following.tolist()], dtype=values.dtype)
    gamma = virtual - previous
    difference = np.subtract(b, a)
    # numpy's _lerp: from the lower neighbour below gamma 0.5, from the upper one at or above it
    return np.where(gamma >= 0.5, b - difference * (1 - gamma), a + difference * gamma).astype(np.float64)


def _order_statistics(values: np.ndarray, ranks: np.ndarray) -> dict[int, float]:
    """The r-th smallest value (0-based) for every r in ``ranks`` (sorted, unique)."""
    n = values.size
    low_ranks, high_ranks = ranks[ranks < n // 2], ranks[ranks >= n // 2]
    if n >= 4 * _SAMPLE_SIZE:
        sample = values[:: n // _SAMPLE_SIZE]
        low = _tail(values, sample, low_ranks, from_top=False) if low_ranks.size else {}
        high = _tail(values, sample, high_ranks, from_top=True) if high_ranks.size else {}
        if low is not None and high is not None:
            return {**low, **high}
    return dict(zip(ranks.tolist(), np.partition(values, ranks)[ranks]))


def _tail(values: np.ndarray, sample: np.ndarray, ranks: np.ndarray, *, from_top: bool) -> dict[int, float] | None:
    """The wanted order statistics from the values past a bound read off ``sample``; None when the bound
    would keep too many values or keeps too few."""
    n, m = values.size, sample.size
    depth = (n - int(ranks.min())) if from_top else int(ranks.max()) + 1  # values the tail must hold
    p = depth / n
    k = math.ceil(p * m + _SPREAD * math.sqrt(m * p * (1 - p))) + 1  # the bound's depth in the sample
    if k > _MAX_TAIL * m:
        return None
    bound = np.partition(sample, m - k if from_top else k - 1)[m - k if from_top else k - 1]
    tail = values[values >= bound] if from_top else values[values <= bound]
    if tail.size < depth:
        return None
    offset = n - tail.size if from_top else 0  # rank of the tail's smallest value in the whole array
    local = ranks - offset
    return dict(zip(ranks.tolist(), np.partition(tail, local)[local]))
