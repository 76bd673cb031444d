"""Figures of the explanation stage: ranked regions, mean maps on the template, top regions on the atlas,
ROC curves, confusion matrices and slice montages. matplotlib (Agg) and nilearn; files written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from headmri.atomic import atomic_path  # noqa: E402
from headmri.gc_frozen import frozen_gc

TISSUE_COLOURS = {"ctx": "#d95f02", "wm": "#7570b3", "subcortical": "#1b9e77"}
OTHER_COLOUR = "#999999"
DPI = 110


def _save(fig: plt.Figure, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, bbox_inches="tight", format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)


def _bar_values(rows: pd.DataFrame) -> tuple[pd.Series, np.ndarray, str]:
    """The ranked value of each bar, its error bars (2, n) and the axis label: the ranking score with its
    bootstrap interval when the table has them, else the mean with the sd over folds (older tables)."""
    has_score = "score" in rows and rows["score"].notna().any()
    values = rows["score"] if has_score else rows["mean"]
    if has_score and {"ci_low", "ci_high"} <= set(rows.columns) and rows["ci_low"].notna().any():
        low = (values - rows["ci_low"]).clip(lower=0).fillna(0).to_numpy()
        high = (rows["ci_high"] - values).clip(lower=0).fillna(0).to_numpy()
        spread = "95 % bootstrap interval over subjects"
    else:
        low = high = rows["sd"].fillna(0).to_numpy() if "sd" in rows else np.zeros(len(rows))
        spread = "sd over folds"
    statistic = str(rows["statistic"].iloc[0]) if "statistic" in rows and len(rows) else "mean"
    normalisation = str(rows["normalisation"].iloc[0]) if "normalisation" in rows and len(rows) else "none"
    scale = {"zscore": "z-scored per subject", "rank": "percentile rank per subject"}.get(normalisation, "raw units")
    if statistic == "contrast":
        label = f"patients vs controls, Hedges' g per fold, mean over folds ({scale}); bars: {spread}"
    else:
        label = f"mean regional score over patients, then folds ({scale}); bars: {spread}"
    return values, np.vstack([low, high]), label


def ranking_bars(ranking: pd.DataFrame, path: str | Path, *, title: str, top_n: int = 20, top_k: int | None = None) -> None:
    """Horizontal bars of the top regions' ranking score, one panel per target. Error bars: the bootstrap
    interval (``ci_low``, ``ci_high``) when the ranking has one, else the sd over folds; the rank interval
    (``rank_ci``) follows the region's name; ``folds_in_top_k`` is written beside each bar."""
    targets = list(dict.fromkeys(ranking["target"])) if "target" in ranking.columns else [None]
    fig, axes = plt.subplots(1, len(targets), figsize=(6.5 * len(targets), 0.32 * top_n + 1.6), squeeze=False)
    for ax, target in zip(axes[0], targets):
        rows = ranking if target is None else ranking[ranking["target"] == target]
        rows = rows.sort_values("rank").head(top_n)
        y = np.arange(len(rows))[::-1]
        colours = [TISSUE_COLOURS.get(t, OTHER_COLOUR) for t in rows["tissue"]]
        values, errors, xlabel = _bar_values(rows)
        ax.barh(y, values, xerr=errors, color=colours, ecolor="#333333", capsize=2)
        intervals = rows["rank_ci"].fillna("").astype(str) if "rank_ci" in rows else pd.Series([""] * len(rows))
        ax.set_yticks(y, [f"{r}. {n}" + (f" [{ci}]" if ci else "") for r, n, ci in zip(rows["rank"], rows["region"], intervals)],
                      fontsize=8)
        n_folds = int(rows["n_folds"].max()) if "n_folds" in rows and len(rows) else None
        ends = (values + errors[1]).to_numpy() if len(rows) else np.zeros(0)
        if "folds_in_top_k" in rows and top_k is not None:
            for yi, end, count in zip(y, ends, rows["folds_in_top_k"]):
                ax.text(max(end, 0), yi, f"  {count}/{n_folds}", va="center", fontsize=7, color="#333333")
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_title(f"{title}" + (f" - target {target}" if target is not None and len(targets) > 1 else ""), fontsize=10)
        if len(rows):
            lowest = float(np.nanmin((values - errors[0]).to_numpy()))
            highest = float(np.nanmax(ends))
            ax.set_xlim(min(0.0, lowest * 1.1), max(highest, 0.0) * 1.18 if highest > 0 else 1.0)
            if lowest < 0:
                ax.axvline(0, color="#333333", linewidth=0.6)
        else:
            ax.set_xlim(0, 1)
    handles = [Patch(color=c, label=t) for t, c in TISSUE_COLOURS.items()]
    notes = [f"n/N beside a bar: folds with the region in their own top {top_k}"] if top_k else []
    if "rank_ci" in ranking and ranking["rank_ci"].fillna("").astype(str).ne("").any():
        notes.append("[a-b]: 95 % bootstrap interval of the rank")
    fig.subplots_adjust(bottom=1.1 / fig.get_size_inches()[1])
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False, bbox_to_anchor=(0.5, 0.0),
               title="tissue" + (f"   ({'; '.join(notes)})" if notes else ""), title_fontsize=8)
    _save(fig, path)


@frozen_gc()  # nilearn's gc.collect() for every image it reads
def mean_map_figure(mean_img: nib.Nifti1Image, template: str | Path, path: str | Path, *, title: str,
                    brain_mask: nib.Nifti1Image | None = None) -> None:
    """The mean map over the MNI template: cuts through its peak, and sagittal cuts.

    Slice maps cover the whole square image, background included; only the brain is shown (the regional
    scores only ever read voxels inside a region, so nothing outside the brain counts anyway).
    """
    from nilearn import plotting

    data = np.asarray(mean_img.dataobj, dtype=np.float32)
    if brain_mask is not None and brain_mask.shape[:3] != data.shape[:3]:  # a source on another grid (fMRI: 3 mm)
        from nilearn.image import resample_to_img

        brain_mask = resample_to_img(brain_mask, mean_img, interpolation="nearest", force_resample=True, copy_header=True)
    if brain_mask is not None:
        data = np.where(np.asarray(brain_mask.dataobj) > 0, data, 0).astype(np.float32)
        mean_img = nib.Nifti1Image(data, mean_img.affine)
    vmax = float(np.nanpercentile(data[data > 0], 99.5)) if np.any(data > 0) else 1.0
    fig = plt.figure(figsize=(11, 6.2))
    peak = np.unravel_index(int(np.nanargmax(data)), data.shape)
    peak_mm = (mean_img.affine @ np.array([*peak, 1.0]))[:3]
    top = fig.add_axes([0.0, 0.4, 1.0, 0.6])
    plotting.plot_stat_map(mean_img, bg_img=str(template), display_mode="ortho", cut_coords=peak_mm, cmap="hot",
                           vmin=0, vmax=vmax, threshold=0.05 * vmax, symmetric_cbar=False, colorbar=True, axes=top,
                           figure=fig, title=title, draw_cross=False)
    bottom = fig.add_axes([0.0, 0.0, 1.0, 0.38])
    plotting.plot_stat_map(mean_img, bg_img=str(template), display_mode="x", cut_coords=6,
                           cmap="hot", vmin=0, vmax=vmax, threshold=0.05 * vmax, symmetric_cbar=False, colorbar=False,
                           axes=bottom, figure=fig, annotate=True)
    _save(fig, path)


@frozen_gc()  # nilearn's gc.collect() for every image it reads
def top_regions_figure(ranking: pd.DataFrame, parcellation: nib.Nifti1Image, template: str | Path, path: str | Path,
                       *, top_k: int, title: str) -> None:
    """The top ``top_k`` regions drawn on a parcellation over the template (colour = rank); one block of
    panels per target class of a multi-class task."""
    from matplotlib.colors import ListedColormap
    from nilearn import plotting

    targets = list(dict.fromkeys(ranking["target"])) if "target" in ranking.columns else [None]
    labels = np.asarray(parcellation.dataobj).astype(np.int32)
    cmap = plt.get_cmap("tab10" if top_k <= 10 else "tab20", max(top_k, 2))
    fig = plt.figure(figsize=(12, 6.5 * len(targets)))
    block = 1.0 / len(targets)
    for i, target in enumerate(targets):
        rows = ranking if target is None else ranking[ranking["target"] == target]
        rows = rows.sort_values("rank").head(top_k)
        roi = np.zeros(labels.shape, dtype=np.int16)
        for position, code in enumerate(rows["label"], start=1):
            roi[labels == int(code)] = position
        roi_img = nib.Nifti1Image(roi, parcellation.affine)
        colours = ListedColormap([cmap(j) for j in range(len(rows))])
        centre = np.argwhere(roi > 0).mean(axis=0) if roi.any() else (np.array(labels.shape) - 1) / 2
        centre_mm = (parcellation.affine @ np.array([*centre, 1.0]))[:3]
        bottom = 1.0 - (i + 1) * block
        shared = dict(bg_img=str(template), cmap=colours, vmin=0.5, vmax=len(rows) + 0.5, figure=fig, alpha=0.85,
                      resampling_interpolation="nearest", colorbar=False)
        label = title + (f" - target {target}" if target is not None and len(targets) > 1 else "")
        plotting.plot_roi(roi_img, display_mode="ortho", cut_coords=centre_mm, draw_cross=False, title=label,
                          axes=fig.add_axes([0.0, bottom + 0.42 * block, 0.72, 0.56 * block]), **shared)
        plotting.plot_roi(roi_img, display_mode="x", cut_coords=6, axes=fig.add_axes([0.0, bottom, 0.72, 0.4 * block]), **shared)
        legend = fig.add_axes([0.73, bottom + 0.05 * block, 0.27, 0.9 * block])
        legend.axis("off")
        legend.legend(handles=[Patch(color=colours(j), label=f"{r}. {n}") for j, (r, n) in enumerate(zip(rows["rank"], rows["region"]))],
                      loc="center left", fontsize=9, frameon=False, title=f"top {len(rows)}" + (f" ({target})" if target else ""))
    _save(fig, path)


def roc_figure(curves: Sequence[tuple[str, np.ndarray, np.ndarray, float]], path: str | Path, *, title: str) -> None:
    """ROC curves: (label, false positive rates, true positive rates, AUC) each."""
    fig, ax = plt.subplots(figsize=(5.2, 5))
    ax.plot([0, 1], [0, 1], color="#bbbbbb", lw=1, ls="--")
    for label, fpr, tpr, auc in curves:
        ax.plot(fpr, tpr, lw=1.6, label=f"{label} (AUC {auc:.2f})" if np.isfinite(auc) else f"{label} (AUC n/a)")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("1 - specificity (false positive rate)")
    ax.set_ylabel("sensitivity (true positive rate)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_aspect("equal")
    _save(fig, path)


def confusion_figure(matrix: np.ndarray, classes: Sequence[str], path: str | Path, *, title: str) -> None:
    """A confusion matrix of counts (rows: true class, columns: predicted class)."""
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 2.6, 1.2 * len(classes) + 2.0))
    ConfusionMatrixDisplay(matrix, display_labels=list(classes)).plot(ax=ax, cmap="Blues", colorbar=False, values_format="d")
    ax.set_title(title, fontsize=10)
    _save(fig, path)


def montage_figure(subjects: Sequence[tuple[str, np.ndarray, np.ndarray]], path: str | Path, *, title: str, columns: int = 7) -> None:
    """Rows of evenly spaced slices per subject, the map over the slice on one colour scale for all panels.

    ``subjects``: (participant ID, slices (n, H, W), maps (n, H, W)). One scale for every panel keeps the
    raw maps comparable across slices and subjects, which is the point of not min-max scaling them. The
    outer 10% of slices on each side (mostly background) are skipped; map values below 5% of the scale
    are left transparent so the anatomy stays visible.
    """
    subjects = [s for s in subjects if s[1] is not None and len(s[1])]
    if not subjects:
        fig, ax = plt.subplots(figsize=(6, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "no patient to show", ha="center", va="center")
        _save(fig, path)
        return
    vmax = max(float(np.percentile(maps, 99.9)) for _, _, maps in subjects) or 1.0
    fig, axes = plt.subplots(len(subjects), columns, figsize=(2.0 * columns + 1.2, 2.1 * len(subjects) + 0.6), squeeze=False,
                             gridspec_kw={"wspace": 0.02, "hspace": 0.12})
    image = None
    for row, (pid, slices, maps) in zip(axes, subjects):
        n = len(slices)
        picks = np.linspace(round(0.1 * (n - 1)), round(0.9 * (n - 1)), min(columns, n)).round().astype(int)
        for ax in row:
            ax.set_axis_off()
        for ax, index in zip(row, picks):
            ax.imshow(slices[index], cmap="gray", interpolation="nearest")
            shown = np.ma.masked_less(maps[index], 0.05 * vmax)
            image = ax.imshow(shown, cmap="hot", alpha=0.6, vmin=0, vmax=vmax, interpolation="bilinear")
            ax.set_title(f"slice {index + 1}/{n}", fontsize=7, pad=2)
        row[0].text(-0.04, 0.5, pid, transform=row[0].transAxes, rotation=90, va="center", ha="right", fontsize=9)
    fig.suptitle(title, fontsize=10)
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, fraction=0.02, pad=0.01, label="raw map value")
    _save(fig, path)
