"""ALFF, mALFF and fALFF from one amplitude spectrum per voxel.

The amplitude at frequency f_k is the square root of the one-sided power spectrum, scaled as
``scipy.signal.periodogram(x, fs=1/TR, detrend=False, scaling="spectrum")`` scales it (|X_k|^2 / N^2,
doubled for 0 < f_k < Nyquist), so for frequencies inside the band a sinusoid of amplitude A shows A/sqrt(2)
(its RMS). No zero padding: the band is averaged over the frequencies the run itself resolves.

- ALFF = mean amplitude over f_k in [low, high] (0.01-0.08 Hz)
- mALFF = ALFF / mean ALFF in the brain mask
- fALFF = sum of amplitudes in the band / sum over all frequencies above 0 (up to Nyquist)

numpy's rfft does the transform (one pass gives ALFF and fALFF); the tests check it against scipy's
periodogram.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from headmri.fmri.series import divide_by_mask_mean, require_good


@dataclass(frozen=True)
class Band:
    """A frequency band in Hz; the default is the paper's 0.01-0.08 Hz."""

    low: float = 0.01
    high: float = 0.08

    def __post_init__(self) -> None:
        if not 0 < self.low < self.high:
            raise ValueError(f"a band needs 0 < low < high, got {self.low}-{self.high} Hz")


LOW_FREQUENCY = Band()


def band_problem(n_volumes: int, tr: float, band: Band = LOW_FREQUENCY) -> str | None:
    """Why a run of ``n_volumes`` at ``tr`` seconds cannot resolve ``band`` (None when it can).

    The run must last at least one period of the band's low edge (else its lowest frequency bins lie
    above the band's start and ALFF measures another band) and the sampling must reach above its high edge.
    """
    if tr <= 0 or not math.isfinite(tr):
        return f"the repetition time {tr} s is not a positive number"
    needed = math.ceil(1.0 / (band.low * tr) - 1e-9)
    if n_volumes < needed:
        return (f"{n_volumes} volumes at TR {tr:g} s last {n_volumes * tr:g} s; the {band.low:g}-{band.high:g} Hz "
                f"band needs at least {needed} volumes ({1 / band.low:g} s)")
    nyquist = 0.5 / tr
    if nyquist <= band.high:
        return f"TR {tr:g} s samples up to {nyquist:.3g} Hz, not above the band's {band.high:g} Hz"
    return None


def amplitude_spectrum(series: np.ndarray, tr: float) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies in Hz, amplitudes (series x frequencies)) of time series in rows, DC included."""
    series = np.asarray(series, dtype=np.float64)
    n = series.shape[-1]
    spectrum = np.fft.rfft(series - series.mean(axis=-1, keepdims=True), axis=-1)
    power = (np.abs(spectrum) / n) ** 2
    last = power.shape[-1] - 1 if n % 2 == 0 else power.shape[-1]  # the Nyquist bin (even n) is not doubled
    power[..., 1:last] *= 2
    return np.fft.rfftfreq(n, d=tr), np.sqrt(power)


def _in_band(freqs: np.ndarray, band: Band) -> np.ndarray:
    selected = (freqs >= band.low - 1e-12) & (freqs <= band.high + 1e-12)
    if not selected.any():
        raise ValueError(f"no frequency of the run lies in {band.low}-{band.high} Hz")
    return selected


def _band_spectrum(series: np.ndarray, tr: float, band: Band) -> tuple[np.ndarray, np.ndarray]:
    """The checked series' amplitude spectrum (series x frequencies) and the mask of ``band``'s frequencies."""
    require_good(np.asarray(series))
    problem = band_problem(np.asarray(series).shape[-1], tr, band)
    if problem:
        raise ValueError(problem)
    freqs, amplitude = amplitude_spectrum(series, tr)
    return amplitude, _in_band(freqs, band)


def alff(series: np.ndarray, tr: float, band: Band = LOW_FREQUENCY) -> np.ndarray:
    """ALFF of each row of ``series`` (voxels x time): the mean amplitude in ``band``."""
    amplitude, selected = _band_spectrum(series, tr, band)
    return amplitude[:, selected].mean(axis=1)


def falff(series: np.ndarray, tr: float, band: Band = LOW_FREQUENCY) -> np.ndarray:
    """fALFF of each row: the band's share of the summed amplitude over all frequencies above 0."""
    amplitude, selected = _band_spectrum(series, tr, band)
    return amplitude[:, selected].sum(axis=1) / amplitude[:, 1:].sum(axis=1)


def malff(alff_values: np.ndarray) -> np.ndarray:
    """mALFF: the in-mask ALFF values divided by their mean (the paper's normalisation by the global mean)."""
    return divide_by_mask_mean(np.asarray(alff_values, dtype=np.float64), "ALFF")
