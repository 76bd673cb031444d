"""RFCS, the regional functional connectivity strength (Li et al. 2025, equation 2; Jiang et al.).

Each region's time series is the mean over its voxels inside the brain mask; r is the Pearson
correlation matrix of the regions' series, and

    S(i) = 1 / (R - 1) * sum_{j != i} |r_ij|,

the mean absolute correlation of region i with the other R - 1 regions (the paper writes 1/N without
saying that the diagonal, always 1, is left out; including it would add 1/N to every region).
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np

from headmri.fmri.atlas import LabelAtlas, on_grid, paint


@dataclass(frozen=True)
class Rfcs:
    """One subject's RFCS: the vector (one value per atlas region, atlas order), its correlation matrix
    and the atlas on the BOLD grid the values were taken from."""

    strength: np.ndarray
    correlation: np.ndarray
    atlas: LabelAtlas

    def image(self) -> nib.Nifti1Image:
        """The RFCS values painted on the atlas's regions."""
        return paint(self.strength, self.atlas)


def strength(region_series: np.ndarray, names: tuple[str, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(S, r) from region time series (time x regions). Raises ValueError naming constant or non-finite
    regions, whose correlations would be NaN."""
    series = np.asarray(region_series, dtype=np.float64)
    if series.ndim != 2 or series.shape[1] < 2:
        raise ValueError(f"need time x regions with at least two regions, got shape {series.shape}")
    bad = ~np.isfinite(series).all(axis=0) | (np.ptp(np.nan_to_num(series), axis=0) == 0)
    if bad.any():
        which = [names[i] if names else i for i in np.flatnonzero(bad)[:10]]
        raise ValueError(f"{int(bad.sum())} region time series are constant or not finite: {which}")
    r = np.corrcoef(series, rowvar=False)
    off = np.abs(r)
    np.fill_diagonal(off, 0.0)
    return off.sum(axis=1) / (r.shape[0] - 1), r


def region_series(bold: nib.Nifti1Image, mask: nib.Nifti1Image, atlas: LabelAtlas) -> np.ndarray:
    """Mean time series (time x regions, atlas order) of each region within the mask, through nilearn.
    Raises ValueError naming regions with no voxel in the mask."""
    from nilearn.regions import img_to_signals_labels

    atlas = atlas if atlas.image.shape[:3] == bold.shape[:3] and np.allclose(atlas.image.affine, bold.affine) \
        else on_grid(atlas, bold)
    labels = atlas.labels() * (np.asarray(mask.dataobj) > 0)
    labels_img = nib.Nifti1Image(labels.astype(np.int32), bold.affine)
    signals, present, _ = img_to_signals_labels(bold, labels_img, return_masked_atlas=True)
    index = {int(label): k for k, label in enumerate(present)}
    missing = [name for i, name in zip(atlas.ids, atlas.names) if i not in index]
    if missing:
        raise ValueError(f"{len(missing)} atlas regions have no voxel in the brain mask: {missing[:10]}")
    return signals[:, [index[i] for i in atlas.ids]]


def rfcs(bold: nib.Nifti1Image, mask: nib.Nifti1Image, atlas: LabelAtlas) -> Rfcs:
    """RFCS of a cleaned (confound-regressed, band-passed) BOLD run."""
    gridded = on_grid(atlas, bold)
    values, r = strength(region_series(bold, mask, gridded), gridded.names)
    return Rfcs(strength=values, correlation=r, atlas=gridded)
