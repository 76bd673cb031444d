"""Per-fold metrics merged into one table, the mean +- sd summary (the structural paper's Table 3), a figure."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

import pandas as pd

from headmri.atomic import atomic_path, write_text, write_tsv
from headmri.errors import InputError

log = logging.getLogger(__name__)

REQUIRED = ["task", "model", "fold", "split", "accuracy", "precision", "specificity", "sensitivity", "auc", "f1"]
# Table 3's order (accuracy, precision, specificity, sensitivity), then what the paper lacks.
SUMMARY_METRICS = [("accuracy", "Accuracy"), ("precision", "Precision"), ("specificity", "Specificity"),
                   ("sensitivity", "Sensitivity"), ("auc", "AUC"), ("f1", "F1"), ("balanced_accuracy", "Balanced acc.")]
SPLIT_ORDER = {"test": 0, "val": 1, "train": 2}


def read_fold_metrics(paths: Iterable[str | Path]) -> pd.DataFrame:
    frames = []
    for path in paths:
        try:
            frame = pd.read_csv(path, sep="\t")
        except FileNotFoundError as exc:
            raise InputError("the per-fold metrics file does not exist", path=path) from exc
        missing = [c for c in REQUIRED if c not in frame.columns]
        if missing:
            raise InputError(f"the per-fold metrics file lacks the column(s) {missing}", path=path)
        frames.append(frame)
    if not frames:
        raise InputError("no per-fold metrics files were given")
    table = pd.concat(frames, ignore_index=True)
    # tasks and models keep the order the files came in (the config's), splits go test, val, train
    first_seen = {c: {v: i for i, v in enumerate(pd.unique(table[c]))} for c in ("task", "model")}

    def key(column: pd.Series) -> pd.Series:
        if column.name == "split":
            return column.map(SPLIT_ORDER).fillna(9)
        return column.map(first_seen[column.name]) if column.name in first_seen else column

    return table.sort_values(["task", "model", "split", "fold"], key=key, ignore_index=True)


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample standard deviation (n - 1) over folds per task x model x split."""
    metrics = [m for m, _ in SUMMARY_METRICS if m in table.columns]
    grouped = table.groupby(["task", "model", "split"], sort=False)[metrics]
    summary = grouped.mean().add_suffix("_mean").join(grouped.std(ddof=1).add_suffix("_sd"))
    summary["folds"] = table.groupby(["task", "model", "split"], sort=False)["fold"].nunique()
    return summary.reset_index()


def _cell(mean: float, sd: float) -> str:
    if pd.isna(mean):
        return "n/a"
    return f"{100 * mean:.2f} ± {100 * sd:.2f}%" if pd.notna(sd) else f"{100 * mean:.2f}%"


def summary_markdown(summary: pd.DataFrame) -> str:
    metrics = [(m, name) for m, name in SUMMARY_METRICS if f"{m}_mean" in summary.columns]
    lines = ["# Classification results", "",
             "Subject-level metrics (slice probabilities averaged per subject unless configured otherwise), "
             "mean ± standard deviation (n - 1) over cross-validation folds, in the layout of Table 3 of "
             "Rafsani et al. 2025. `test` = blind test subjects of each fold; `val` = the validation subjects "
             "used to choose each checkpoint (optimistic by construction).", ""]
    for split in sorted(summary["split"].unique(), key=lambda s: SPLIT_ORDER.get(s, 9)):
        part = summary[summary["split"] == split]
        lines += [f"## {split}", "", "| Task | Model | Folds | " + " | ".join(n for _, n in metrics) + " |",
                  "|" + "---|" * (3 + len(metrics))]
        for _, row in part.iterrows():
            cells = [_cell(row[f"{m}_mean"], row[f"{m}_sd"]) for m, _ in metrics]
            lines.append(f"| {row['task']} | {row['model']} | {row['folds']} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def metrics_figure(summary: pd.DataFrame, out_png: str | Path) -> None:
    """Bars of mean metric per task x model, sd as error bars, one panel per split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    metrics = [(m, name) for m, name in SUMMARY_METRICS if f"{m}_mean" in summary.columns]
    splits = sorted(summary["split"].unique(), key=lambda s: SPLIT_ORDER.get(s, 9))
    fig, axes = plt.subplots(1, len(splits), figsize=(6.5 * len(splits), 4.8), squeeze=False, sharey=True)
    for ax, split in zip(axes[0], splits):
        part = summary[summary["split"] == split].reset_index(drop=True)
        width = 0.8 / max(len(part), 1)
        x = np.arange(len(metrics))
        for i, row in part.iterrows():
            means = [row[f"{m}_mean"] for m, _ in metrics]
            sds = [0.0 if pd.isna(row[f"{m}_sd"]) else row[f"{m}_sd"] for m, _ in metrics]
            ax.bar(x + (i - (len(part) - 1) / 2) * width, means, width, yerr=sds, capsize=2,
                   label=f"{row['task']} / {row['model']} (n={row['folds']})")
        ax.set_xticks(x, [name for _, name in metrics], rotation=30, ha="right")
        ax.set_ylim(0, 1.05)
        ax.axhline(0.5, color="grey", lw=0.6, ls=":")
        ax.set_title(f"{split} subjects: mean ± sd over folds")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=min(len(part), 3), frameon=False)
    axes[0][0].set_ylabel("score")
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def metrics_table(fold_metric_files: Iterable[str | Path], out_tsv: str | Path, out_md: str | Path,
                  out_png: str | Path) -> pd.DataFrame:
    """Concatenate per-fold metrics.tsv files; write the merged table, the markdown summary and a figure."""
    table = read_fold_metrics(fold_metric_files)
    write_tsv(table, out_tsv)
    summary = summarise(table)
    write_text(summary_markdown(summary), out_md)
    metrics_figure(summary, out_png)
    log.info("merged %d metric rows into %s; summary in %s", len(table), out_tsv, out_md)
    return summary
