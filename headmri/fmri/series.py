"""Checks on voxel or region time series that every indicator relies on.

A constant series has no spectrum to normalise (fALFF is 0/0), no ranks to agree (Kendall's W of an
all-constant neighbourhood is 0/0) and no correlation; a NaN spreads through every sum. Both are refused
here, so no indicator ever returns NaN silently.
"""

from __future__ import annotations

import numpy as np


def bad_series(series: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of ``series`` (rows: voxels or regions, columns: time) that are (non-finite, constant)."""
    series = np.asarray(series)
    if series.ndim != 2:
        raise ValueError(f"time series must be 2-D (series x time), got shape {series.shape}")
    finite = np.isfinite(series).all(axis=1)
    constant = finite & (np.ptp(np.where(np.isfinite(series), series, 0), axis=1) == 0)
    return np.flatnonzero(~finite), np.flatnonzero(constant)


def describe_bad(series: np.ndarray, what: str = "voxel") -> str | None:
    """A sentence naming how many series are bad and the first few indices, or None when all are fine."""
    nonfinite, constant = bad_series(series)
    parts = []
    if nonfinite.size:
        parts.append(f"{nonfinite.size} {what} time series with NaN or infinite values (first: {nonfinite[:5].tolist()})")
    if constant.size:
        parts.append(f"{constant.size} constant {what} time series (first: {constant[:5].tolist()})")
    return "; ".join(parts) or None


def require_good(series: np.ndarray, what: str = "voxel") -> None:
    """Raise ValueError when any series is constant or non-finite."""
    problem = describe_bad(series, what)
    if problem:
        raise ValueError(f"{problem}: indicators would be NaN or meaningless there")


def divide_by_mask_mean(values: np.ndarray, what: str) -> np.ndarray:
    """``values`` (the in-mask values of a map) divided by their mean: mALFF, and ReHo as the paper uses it."""
    mean = float(np.mean(values))
    if not np.isfinite(mean) or mean <= 0:
        raise ValueError(f"the mean {what} in the mask is {mean}; cannot normalise by it")
    return values / mean
