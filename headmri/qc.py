"""Quality control of preprocessing: a picture and a row of numbers per subject, outliers per cohort.

Per subject (``qc_subject``): the registered brain with the template's brain outline drawn over it, and
a one-row TSV with the similarity to the template, the overlap of the brain masks, the original image's
voxel size, orientation and obliquity, and the brain volume. For the cohort (``qc_table``): the rows
together, a robust z-score per metric (median and MAD, so one failed subject cannot hide itself by
inflating the spread; the spread has a floor, a fraction of the median, so that in a cohort of
near-identical scans differences of 0.001 are not flagged), an ``outlier`` flag with its reasons, and a
figure of the distributions. The picture also shows the native-space brain mask over the original T1w,
the thing to look at after brain extraction.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Iterable, Sequence

import nibabel as nib
import numpy as np
import pandas as pd

from headmri.atomic import atomic_path, write_tsv
from headmri.errors import InputError
from headmri.gc_frozen import frozen_gc
from headmri.t1w import check_header

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Metric:
    column: str
    label: str
    bad_side: str  # "low": only low values are suspicious; "both": either side
    floor: float | None = None  # below this the subject is an outlier whatever the cohort looks like


# Absolute floors catch a cohort that failed as a whole (robust z only sees subjects unlike the others):
# a brain registered to MNI at all correlates well above 0.5 with the template, and affine-registered
# brain masks overlap the template mask with Dice above ~0.9 (0.8 leaves margin for atrophy and BET).
METRICS = (
    Metric("similarity_ncc", "similarity to template (NCC in template mask)", "low", floor=0.5),
    Metric("mask_dice", "brain mask Dice vs template mask", "low", floor=0.8),
    Metric("brain_volume_ml", "brain volume (ml)", "both"),
)
# MAD of a normal distribution is 0.6745 sigma; the mean absolute deviation is 0.7979 sigma.
MAD_TO_SD = 1.4826
MEAN_AD_TO_SD = 1.2533


# --- per subject -------------------------------------------------------------------------------------


def normalised_cross_correlation(a: np.ndarray, b: np.ndarray, within: np.ndarray) -> float:
    """Pearson correlation of two images over the voxels of a mask (1 = identical up to gain and offset)."""
    x = a[within].astype(np.float64)
    y = b[within].astype(np.float64)
    x -= x.mean()
    y -= y.mean()
    denom = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denom) if denom > 0 else 0.0


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    total = a.sum() + b.sum()
    return float(2.0 * np.logical_and(a, b).sum() / total) if total else 1.0


def _on_grid(img: nib.Nifti1Image, reference: nib.Nifti1Image, interpolation: str) -> np.ndarray:
    """The image's data on the reference grid (resampled only when the grids differ)."""
    if img.shape[:3] == reference.shape[:3] and np.allclose(img.affine, reference.affine, atol=1e-3):
        return np.asanyarray(img.dataobj).reshape(reference.shape[:3])
    from nilearn.image import resample_to_img

    return resample_to_img(img, reference, interpolation=interpolation, force_resample=True,
                           copy_header=True).get_fdata()


def _template_or_default(template_head, template_mask):
    if template_head is not None and template_mask is not None:
        return template_head, template_mask
    from headmri.templates import embedded_template

    template = embedded_template()
    return template.head, template.brain_mask


def subject_metrics(brain_mni, mask_mni, template_head, template_mask, *, subject: str, original_t1w,
                    mask_native=None) -> dict:
    """The QC numbers of one subject (see the module docstring); ``None`` templates mean the embedded
    MNI152NLin6Asym head and brain mask (the same space as FSL's MNI152, so it serves both backends)."""
    template_head, template_mask = _template_or_default(template_head, template_mask)
    brain_img, mask_img = nib.load(brain_mni), nib.load(mask_mni)
    brain = brain_img.get_fdata(dtype=np.float32)
    mask = np.asanyarray(mask_img.dataobj) > 0
    template = _on_grid(nib.load(template_head), brain_img, "continuous")
    template_brain = _on_grid(nib.load(template_mask), brain_img, "nearest") > 0
    if not mask.any():
        raise InputError("the registered brain mask is empty", subject=subject, path=mask_mni)
    facts = check_header(original_t1w, subject=subject)
    volume_img = nib.load(mask_native) if mask_native else mask_img
    volume_vox = float((np.asanyarray(volume_img.dataobj) > 0).sum())
    voxel_ml = float(abs(np.linalg.det(volume_img.affine[:3, :3]))) / 1000.0
    return {
        "participant_id": subject,
        "similarity_ncc": round(normalised_cross_correlation(brain, template, template_brain), 4),
        "mask_dice": round(dice(mask, template_brain), 4),
        "brain_volume_ml": round(volume_vox * voxel_ml, 1),
        "brain_volume_space": "native" if mask_native else "MNI",
        "voxel_i_mm": round(facts.voxel_mm[0], 3),
        "voxel_j_mm": round(facts.voxel_mm[1], 3),
        "voxel_k_mm": round(facts.voxel_mm[2], 3),
        "orientation": facts.orientation,
        "oblique": facts.oblique,
    }


def qc_subject(
    brain_mni: str | os.PathLike,
    mask_mni: str | os.PathLike,
    template_head: str | os.PathLike | None,
    template_mask: str | os.PathLike | None,
    png_out: str | os.PathLike,
    row_out: str | os.PathLike,
    *,
    subject: str,
    original_t1w: str | os.PathLike,
    mask_native: str | os.PathLike | None = None,
) -> dict:
    """Write one subject's QC picture and one-row TSV; return the row.

    ``mask_native`` (the native-space brain mask) gives the brain volume in the subject's own space;
    without it the volume is measured in MNI space (scaled by the registration) and the row says so.
    """
    template_head, template_mask = _template_or_default(template_head, template_mask)
    row = subject_metrics(brain_mni, mask_mni, template_head, template_mask, subject=subject,
                          original_t1w=original_t1w, mask_native=mask_native)
    log.info("%s: QC %s", subject, row)
    plot_registration(brain_mni, template_mask, png_out, native=(original_t1w, mask_native) if mask_native else None,
                      title=f"{subject}  NCC {row['similarity_ncc']:.3f}  Dice {row['mask_dice']:.3f}  "
                            f"original {row['orientation']}{' oblique' if row['oblique'] else ''}")
    write_tsv(pd.DataFrame([row]), row_out)
    return row


def _display_grid(path) -> nib.Nifti1Image:
    """An image for the QC picture only, read once into memory: reoriented to RAS without interpolation,
    its remaining rotation (an oblique acquisition) dropped from the affine. nilearn resamples any
    non-diagonal affine with a generic spline transform, 3.4 s per panel of a 1-degree-oblique 1 mm T1w;
    the picture shows an image against a mask on the same grid, so the voxel grid is what to draw (an
    image already in RAS, as the MNI ones, keeps its coordinates exactly)."""
    img = nib.as_closest_canonical(nib.load(path))
    affine = np.diag([*img.header.get_zooms()[:3], 1.0])
    affine[:3, 3] = img.affine[:3, 3]
    return nib.Nifti1Image(np.asanyarray(img.dataobj).astype(np.float32), affine)


def _cut_coords(mask: nib.Nifti1Image, mode: str, n: int = 7) -> np.ndarray:
    """``n`` evenly spaced cuts (mm) across the mask's extent along the display axis (5th-95th
    percentile of its voxels): what nilearn's own search (find_cut_slices, 0.8 s a panel) is for."""
    voxels = np.argwhere(np.asanyarray(mask.dataobj) > 0)[::20]
    coords = nib.affines.apply_affine(mask.affine, voxels)[:, "xyz".index(mode)]
    return np.linspace(*np.percentile(coords, [5, 95]), n)


def plot_registration(brain_mni, template_mask, png_out, *, title: str, native=None) -> None:
    """Sagittal and axial cuts of the registered brain with the template brain outline in red; with
    ``native`` (original T1w, native brain mask) first sagittal and axial cuts of the original T1w with
    its brain mask's outline in green."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from nilearn import plotting

    with frozen_gc():  # nilearn's gc.collect() per image read: 16 per picture, 0.12 s each otherwise
        _draw_registration(plt, plotting, brain_mni, template_mask, png_out, title=title, native=native)


def _draw_registration(plt, plotting, brain_mni, template_mask, png_out, *, title: str, native) -> None:
    pairs = ([(native[0], native[1], "lime")] if native else []) + [(brain_mni, template_mask, "r")]
    images = [(_display_grid(image), _display_grid(outline), colour) for image, outline, colour in pairs]
    panels = [(image, outline, mode, colour) for image, outline, colour in images for mode in "xz"]
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 2.2 * len(panels)))
    for ax, (image, outline, mode, colour) in zip(axes, panels):
        display = plotting.plot_anat(image, display_mode=mode, cut_coords=_cut_coords(outline, mode), axes=ax,
                                     figure=fig, annotate=True, draw_cross=False, colorbar=False, black_bg=True)
        display.add_contours(outline, levels=[0.5], colors=colour, linewidths=0.8)
    fig.suptitle(title, color="white", fontsize=11)
    fig.patch.set_facecolor("black")
    with atomic_path(png_out) as tmp:
        fig.savefig(tmp, format="png", dpi=90, facecolor="black")
    plt.close(fig)


# --- cohort ------------------------------------------------------------------------------------------


def robust_scale(values: pd.Series, min_spread: float = 0.0) -> tuple[float, float]:
    """(median, robust SD): 1.4826 MAD, or 1.2533 x the mean absolute deviation when the MAD is zero
    (more than half the values equal), and at least ``min_spread`` x |median| (config
    preprocessing.qc_min_spread); the SD is 0 for a metric with no spread at all and no floor."""
    x = values.astype(float)
    median = float(x.median())
    scale = MAD_TO_SD * float((x - median).abs().median())
    if not scale > 0:
        scale = MEAN_AD_TO_SD * float((x - median).abs().mean())
    scale = max(scale if scale > 0 else 0.0, min_spread * abs(median))
    return median, scale


def robust_z(values: pd.Series, min_spread: float = 0.0) -> pd.Series:
    """(x - median) / robust SD; 0 everywhere when the metric has no spread."""
    median, scale = robust_scale(values, min_spread)
    if scale == 0:
        return pd.Series(0.0, index=values.index)
    return (values.astype(float) - median) / scale


def flag_outliers(table: pd.DataFrame, outlier_z: float, metrics: Sequence[Metric] = METRICS,
                  min_spread: float = 0.0) -> pd.DataFrame:
    """Add ``<metric>_robust_z`` columns, ``outlier`` (bool) and ``outlier_reasons`` (text)."""
    table = table.copy()
    reasons: list[list[str]] = [[] for _ in range(len(table))]
    for metric in metrics:
        z = robust_z(table[metric.column], min_spread)
        table[f"{metric.column}_robust_z"] = z.round(2)
        median = float(table[metric.column].astype(float).median())
        for i, (value, zi) in enumerate(zip(table[metric.column].astype(float), z)):
            if (zi < -outlier_z) or (metric.bad_side == "both" and zi > outlier_z):
                reasons[i].append(f"{metric.column}={value:g} (robust z {zi:+.1f}, median {median:g})")
            elif metric.floor is not None and value < metric.floor:
                reasons[i].append(f"{metric.column}={value:g} below {metric.floor:g}")
    table["outlier"] = [bool(r) for r in reasons]
    table["outlier_reasons"] = ["; ".join(r) for r in reasons]
    return table


def qc_table(rows: Iterable[str | os.PathLike], out_tsv: str | os.PathLike, *, outlier_z: float,
             png_out: str | os.PathLike | None = None, min_spread: float = 0.0) -> pd.DataFrame:
    """Concatenate the per-subject rows, flag outliers, write the table (and the summary figure)."""
    frames = [pd.read_csv(path, sep="\t") for path in rows]
    if not frames:
        raise InputError("no per-subject QC rows to combine", path=out_tsv)
    table = pd.concat(frames, ignore_index=True).sort_values("participant_id", ignore_index=True)
    if len(table) < 3:
        log.warning("only %d subject(s): robust z-scores need a cohort; only the absolute floors apply", len(table))
    table = flag_outliers(table, outlier_z, min_spread=min_spread)
    for _, row in table[table["outlier"]].iterrows():
        log.warning("QC outlier %s: %s", row["participant_id"], row["outlier_reasons"])
    write_tsv(table, out_tsv)
    if png_out is not None:
        plot_cohort(table, png_out, outlier_z=outlier_z, min_spread=min_spread)
    return table


def plot_cohort(table: pd.DataFrame, png_out, *, outlier_z: float, metrics: Sequence[Metric] = METRICS,
                min_spread: float = 0.0) -> None:
    """One panel per metric: every subject as a dot, outliers in red and named, the median and the
    robust-z limits as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 4.2))
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(table))  # fixed seed: the same figure each run
    for ax, metric in zip(np.atleast_1d(axes), metrics):
        values = table[metric.column].astype(float).to_numpy()
        bad = table["outlier_reasons"].str.contains(metric.column, regex=False).to_numpy()
        ax.scatter(jitter[~bad], values[~bad], color="0.3", s=18, label="subjects")
        ax.scatter(jitter[bad], values[bad], color="red", s=30, label="outlier")
        for x, y, pid in zip(jitter[bad], values[bad], table["participant_id"][bad]):
            ax.annotate(pid, (x, y), fontsize=7, color="red", xytext=(4, 2), textcoords="offset points")
        median, scale = robust_scale(table[metric.column], min_spread)
        ax.axhline(median, color="0.5", lw=1, label="median")
        if scale > 0:
            ax.axhline(median - outlier_z * scale, color="orange", ls="--", lw=1, label=f"robust z = {outlier_z:g}")
            if metric.bad_side == "both":
                ax.axhline(median + outlier_z * scale, color="orange", ls="--", lw=1)
        if metric.floor is not None:
            ax.axhline(metric.floor, color="red", ls=":", lw=1, label="absolute floor")
        ax.set_xlim(-0.5, 0.5)
        ax.set_xticks([])
        ax.set_title(metric.label, fontsize=9)
    np.atleast_1d(axes)[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"Preprocessing QC: {len(table)} subjects, {int(table['outlier'].sum())} flagged", fontsize=11)
    fig.tight_layout()
    with atomic_path(png_out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
