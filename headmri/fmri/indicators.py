"""All indicators of one subject, each computed on the preprocessing it needs.

- amplitude indicators (ALFF, mALFF, fALFF): confounds regressed and detrended, *not* band-passed (fALFF
  is the band's share of the whole spectrum, which a band-pass would erase), smoothed (4 mm FWHM)
- synchrony indicators (ReHo, RFCS): confounds regressed, detrended, band-passed 0.01-0.08 Hz, *not*
  smoothed (smoothing makes neighbours agree by construction, which inflates ReHo)

ReHo is Kendall's W divided by its mean in the mask, as the paper normalises it; ALFF is kept both raw and
divided by its mean (mALFF).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import nibabel as nib
import numpy as np

from headmri.errors import InputError
from headmri.fmri import alff as amplitude
from headmri.fmri.alff import LOW_FREQUENCY, Band
from headmri.fmri.atlas import LabelAtlas, aal116
from headmri.fmri.bold import (
    MNI_3MM,
    Bold,
    BoldFiles,
    Cleaning,
    Grid,
    clean_bold,
    load_bold,
    read_confounds,
)
from headmri.fmri.reho import kendall_w
from headmri.fmri.rfcs import Rfcs, rfcs
from headmri.fmri.series import divide_by_mask_mean
from headmri.gc_frozen import frozen_gc

MAPS = ("alff", "malff", "falff", "reho", "rfcs")


@dataclass(frozen=True)
class IndicatorSettings:
    drop_volumes: int = 0
    confounds: tuple[str, ...] = ()
    band: Band = LOW_FREQUENCY
    smooth_fwhm: float = 4.0
    reho_neighbourhood: int = 27
    grid: Grid | None = MNI_3MM

    def amplitude_cleaning(self) -> Cleaning:
        return Cleaning(self.drop_volumes, self.confounds, True, False, self.band, self.smooth_fwhm, self.grid)

    def synchrony_cleaning(self) -> Cleaning:
        return Cleaning(self.drop_volumes, self.confounds, True, True, self.band, None, self.grid)


@dataclass(frozen=True)
class SubjectIndicators:
    """The maps (``MAPS``, 3-D float32 on the output grid, 0 outside the mask), the RFCS details and the
    brain mask the maps were computed in (on the output grid)."""

    maps: dict[str, nib.Nifti1Image] = field(default_factory=dict)
    rfcs: Rfcs | None = None
    mask: nib.Nifti1Image | None = None


def _in_mask_map(values: np.ndarray, bold: Bold) -> nib.Nifti1Image:
    out = np.zeros(bold.mask.shape, dtype=np.float32)
    out[bold.mask_array()] = values
    return nib.Nifti1Image(out, bold.mask.affine)


def amplitude_maps(bold: Bold, band: Band = LOW_FREQUENCY) -> dict[str, nib.Nifti1Image]:
    """ALFF, mALFF and fALFF maps of a cleaned, unfiltered run."""
    series = bold.series()
    values = amplitude.alff(series, bold.tr, band)
    return {"alff": _in_mask_map(values, bold), "malff": _in_mask_map(amplitude.malff(values), bold),
            "falff": _in_mask_map(amplitude.falff(series, bold.tr, band), bold)}


def reho_map(bold: Bold, neighbourhood: int = 27) -> nib.Nifti1Image:
    """ReHo divided by its mean in the mask, of a cleaned, band-passed, unsmoothed run."""
    mask = bold.mask_array()
    w = kendall_w(np.asarray(bold.img.dataobj), mask, neighbourhood)
    return _in_mask_map(divide_by_mask_mean(w[mask], "ReHo"), bold)


def compute_indicators(files: BoldFiles, settings: IndicatorSettings = IndicatorSettings(),
                       atlas: LabelAtlas | None = None) -> SubjectIndicators:
    """Every map of ``MAPS`` for one run; problems in the data become InputErrors naming subject and file."""
    raw = load_bold(files, settings.drop_volumes, settings.band)
    confounds = read_confounds(files, settings.confounds, raw.img.shape[3])
    try:
        with frozen_gc():  # nilearn's gc.collect() for each image it reads: half of a run's time otherwise
            unfiltered = clean_bold(raw, settings.amplitude_cleaning(), confounds)
            maps = amplitude_maps(unfiltered, settings.band)
            filtered = clean_bold(raw, settings.synchrony_cleaning(), confounds)
            maps["reho"] = reho_map(filtered, settings.reho_neighbourhood)
            strength = rfcs(filtered.img, filtered.mask, atlas or aal116())
    except ValueError as exc:  # constant series after cleaning, regions outside the mask, ...
        raise InputError(str(exc), subject=files.subject, path=files.bold) from exc
    maps["rfcs"] = strength.image()
    return SubjectIndicators(maps=maps, rfcs=strength, mask=filtered.mask)
