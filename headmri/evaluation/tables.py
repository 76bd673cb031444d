"""Per-fold metrics merged into one table, the mean +- sd summary (the structural paper's Table 3), a figure.

Folds whose model did not learn (``learned`` False in their metrics.tsv, headmri.evaluation.learned) stay
in the merged table but not in the means: a chance-level fold's metrics are noise, not a score of the
method. The summary says over how many folds each mean is (``n_learned`` of ``n_folds``) and lists the
folds left out with the reason. A metrics file without a ``learned`` column (written before the check
existed) counts as learned.

Given every fold's subject predictions too (the workflow always hands them), the table also gets one
**pooled** row per source x task x model (fold 0, split ``test``): the metrics of every fold's test subjects
pooled, each scored by the model of the fold that held it out (``headmri.evaluation.metrics.pooled_test_metrics``;
the split's test sets are disjoint across folds in every scheme), over every fold, learned or not (leaving
folds out would leave their subjects out), with ``n_folds`` and ``n_learned`` beside it. Leave-one-subject-out
folds have no AUC of their own, and a fold with one test subject per class has an AUC of 0 or 1, so the pooled
row is the one score of the first and a finer one for the second (the task's ROC figure pools the same way,
over the folds that learned). The means over folds leave the pooled rows out; the summary shows them in a section of their own.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

import pandas as pd

from headmri.atomic import atomic_path, write_text, write_tsv
from headmri.config import DEFAULT_SOURCE
from headmri.errors import InputError
from headmri.evaluation.learned import as_bool
from headmri.evaluation.metrics import POOLED_FOLD, pooled_test_metrics

log = logging.getLogger(__name__)

REQUIRED = ["task", "model", "fold", "split", "accuracy", "precision", "specificity", "sensitivity", "auc", "f1"]
# Table 3's order (accuracy, precision, specificity, sensitivity), then what the paper lacks.
SUMMARY_METRICS = [("accuracy", "Accuracy"), ("precision", "Precision"), ("specificity", "Specificity"),
                   ("sensitivity", "Sensitivity"), ("auc", "AUC"), ("f1", "F1"), ("balanced_accuracy", "Balanced acc.")]
SPLIT_ORDER = {"test": 0, "val": 1, "train": 2}
KEYS = ["source", "task", "model"]  # what one model is trained on, for what, and which


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
        if "source" not in frame.columns:  # written before sources existed: the only source then was T1w
            frame.insert(0, "source", DEFAULT_SOURCE)
        if "learned" in frame.columns:
            try:
                frame["learned"] = frame["learned"].map(as_bool).astype(object)
            except ValueError as exc:
                raise InputError(f"the 'learned' column holds a value that is not a boolean ({exc})", path=path) from exc
        frames.append(frame)
    if not frames:
        raise InputError("no per-fold metrics files were given")
    return _sorted(pd.concat(frames, ignore_index=True))


def _sorted(table: pd.DataFrame) -> pd.DataFrame:
    # sources, tasks and models keep the order the files came in (the config's), splits go test, val, train
    first_seen = {c: {v: i for i, v in enumerate(pd.unique(table[c]))} for c in KEYS}

    def key(column: pd.Series) -> pd.Series:
        if column.name == "split":
            return column.map(SPLIT_ORDER).fillna(9)
        return column.map(first_seen[column.name]) if column.name in first_seen else column

    return table.sort_values([*KEYS, "split", "fold"], key=key, ignore_index=True)


def pooled_metrics(fold_metric_files: Iterable[str | Path], prediction_files: Iterable[str | Path]) -> pd.DataFrame:
    """One pooled test row per source x task x model from each fold's ``metrics.tsv`` (which names the source,
    task, model, fold and whether it learned) and, in the same order, its ``predictions_subjects.tsv`` (whose
    ``prob_<class>`` columns are in the task's class order)."""
    groups: dict[tuple, list[pd.DataFrame]] = {}
    learned: dict[tuple, list[bool]] = {}
    for metrics_path, predictions_path in zip(fold_metric_files, prediction_files, strict=True):
        metrics = read_fold_metrics([metrics_path])
        key = tuple(metrics[c].iloc[0] for c in KEYS)
        try:
            predictions = pd.read_csv(predictions_path, sep="\t", dtype={"participant_id": str})
        except FileNotFoundError as exc:
            raise InputError("the per-fold subject predictions file does not exist", path=predictions_path) from exc
        groups.setdefault(key, []).append(predictions.assign(fold=int(metrics["fold"].iloc[0])))
        learned.setdefault(key, []).append(bool(counts_as_learned(metrics).all()))
    rows = []
    for (source, task, model), frames in groups.items():
        predictions = pd.concat(frames, ignore_index=True)
        classes = [c[len("prob_"):] for c in predictions.columns if c.startswith("prob_")]
        row = pooled_test_metrics(predictions, classes, task=task, model=model)
        row.insert(0, "source", source)
        rows.append(row.assign(n_folds=len(frames), n_learned=sum(learned[(source, task, model)])))
    return pd.concat(rows, ignore_index=True)


def counts_as_learned(table: pd.DataFrame) -> pd.Series:
    """True for the rows of folds that learned, or that predate the check (no ``learned`` value)."""
    if "learned" not in table.columns:
        return pd.Series(True, index=table.index)
    return table["learned"].map(lambda v: as_bool(v) is not False).astype(bool)


def unlearned_folds(table: pd.DataFrame) -> pd.DataFrame:
    """One row per source x task x model x fold that did not learn: ``source, task, model, fold, learned_reason``."""
    columns = [*KEYS, "fold", "learned_reason"]
    rows = table[~counts_as_learned(table)]
    if "learned_reason" not in rows.columns:
        rows = rows.assign(learned_reason="")
    return rows[columns].drop_duplicates([*KEYS, "fold"]).reset_index(drop=True)


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample standard deviation (n - 1) per source x task x model x split over the folds that
    learned; ``n_folds`` counts every fold, ``n_learned`` those behind the mean (NaN means when none learned)."""
    keys = [*KEYS, "split"]
    metrics = [m for m, _ in SUMMARY_METRICS if m in table.columns]
    table = table[table["fold"] != POOLED_FOLD]  # pooled rows are no fold of their own
    learned = table[counts_as_learned(table)]
    groups = table.groupby(keys, sort=False)
    grouped = learned.groupby(keys, sort=False)[metrics]
    summary = pd.DataFrame(index=groups.size().index)
    summary = summary.join(grouped.mean().add_suffix("_mean")).join(grouped.std(ddof=1).add_suffix("_sd"))
    summary["n_folds"] = groups["fold"].nunique()
    summary["n_learned"] = learned.groupby(keys, sort=False)["fold"].nunique().reindex(summary.index).fillna(0).astype(int)
    return summary.reset_index()


def _cell(mean: float, sd: float) -> str:
    if pd.isna(mean):
        return "n/a"
    return f"{100 * mean:.2f} ± {100 * sd:.2f}%" if pd.notna(sd) else f"{100 * mean:.2f}%"


def _pooled_markdown(pooled: pd.DataFrame, metrics: list[tuple[str, str]]) -> list[str]:
    lines = ["## test, pooled over folds", "",
             "Every fold's test subjects pooled into one set, each scored by the model of the fold that held it "
             "out, over every fold, learned or not. A leave-one-subject-out fold tests one subject and has no AUC, "
             "precision or F1 of its own; a fold with one test subject per class has an AUC of 0 or 1. A pooled AUC "
             "compares probabilities of different folds' models, so it also depends on how alike they are "
             "calibrated.", "",
             "| Source | Task | Model | Folds learned | Subjects | " + " | ".join(n for _, n in metrics) + " |",
             "|" + "---|" * (5 + len(metrics))]
    for _, row in pooled.iterrows():
        cells = [_cell(row[m], float("nan")) for m, _ in metrics]
        if pd.isna(row.get("n_folds")):  # a row pooled by its own job (the fMRI baselines): no learned check
            folds = "n/a"
        else:
            folds = f"{int(row['n_learned'])} / {int(row['n_folds'])}" + ("" if row["n_learned"] == row["n_folds"] else " ⚠")
        subjects = int(row["n_subjects"]) if pd.notna(row.get("n_subjects")) else "n/a"
        lines.append(f"| {row['source']} | {row['task']} | {row['model']} | {folds} | {subjects} | "
                     + " | ".join(cells) + " |")
    return lines + [""]


def summary_markdown(summary: pd.DataFrame, unlearned: pd.DataFrame | None = None,
                     pooled: pd.DataFrame | None = None) -> str:
    """The Table-3 layout; ``unlearned`` (``unlearned_folds``) adds the list of folds left out, ``pooled``
    (``pooled_metrics``) the pooled test rows."""
    metrics = [(m, name) for m, name in SUMMARY_METRICS if f"{m}_mean" in summary.columns]
    lines = ["# Classification results", "",
             "Subject-level metrics (slice probabilities averaged per subject unless configured otherwise), "
             "mean ± standard deviation (n - 1) over the cross-validation folds whose model learned, in the "
             "layout of Table 3 of Rafsani et al. 2025. `Folds` = folds that learned / all folds: a fold whose "
             "training loss stayed near chance or whose subject probabilities are constant "
             "(`training.learned_check`) is left out of the means and listed below. `test` = blind test "
             "subjects of each fold; `val` = the validation subjects used to choose each checkpoint "
             "(optimistic by construction).", ""]
    for split in sorted(summary["split"].unique(), key=lambda s: SPLIT_ORDER.get(s, 9)):
        part = summary[summary["split"] == split]
        lines += [f"## {split}", "", "| Source | Task | Model | Folds | " + " | ".join(n for _, n in metrics) + " |",
                  "|" + "---|" * (4 + len(metrics))]
        for _, row in part.iterrows():
            cells = [_cell(row[f"{m}_mean"], row[f"{m}_sd"]) for m, _ in metrics]
            folds = f"{row['n_learned']} / {row['n_folds']}" + ("" if row["n_learned"] == row["n_folds"] else " ⚠")
            lines.append(f"| {row['source']} | {row['task']} | {row['model']} | {folds} | " + " | ".join(cells) + " |")
        lines.append("")
    if pooled is not None and not pooled.empty:
        lines += _pooled_markdown(pooled, metrics)
    lines += ["## Folds that did not learn", ""]
    if unlearned is None or unlearned.empty:
        lines += ["None: every fold's model learned (`training.learned_check`).", ""]
    else:
        lines += [f"> **Warning**: {len(unlearned)} fold(s) did not learn. Their rows stay in `tables/metrics.tsv` "
                  "(`learned` = False) but not in the means above; with `explain.exclude_unlearned` (the default) "
                  "their maps are left out of the regional rankings too.", "",
                  "| Source | Task | Model | Fold | Why |", "|---|---|---|---|---|"]
        for _, row in unlearned.iterrows():
            reason = str(row["learned_reason"]).replace("|", "/") if pd.notna(row["learned_reason"]) else ""
            lines.append(f"| {row['source']} | {row['task']} | {row['model']} | {row['fold']} | {reason} |")
        lines.append("")
    return "\n".join(lines)


def metrics_figure(summary: pd.DataFrame, out_png: str | Path) -> None:
    """Bars of mean metric per source x task x model, sd as error bars, one panel per split."""
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
                   label=f"{row['source']} / {row['task']} / {row['model']} ({row['n_learned']} of {row['n_folds']} folds learned)")
        ax.set_xticks(x, [name for _, name in metrics], rotation=30, ha="right")
        ax.set_ylim(0, 1.05)
        ax.axhline(0.5, color="grey", lw=0.6, ls=":")
        ax.set_title(f"{split} subjects: mean ± sd over the folds that learned")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=min(len(part), 3), frameon=False)
    axes[0][0].set_ylabel("score")
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def metrics_table(fold_metric_files: Iterable[str | Path], out_tsv: str | Path, out_md: str | Path,
                  out_png: str | Path, prediction_files: Iterable[str | Path] | None = None,
                  baseline_metric_files: Iterable[str | Path] = ()) -> pd.DataFrame:
    """Concatenate per-fold metrics.tsv files; write the merged table, the markdown summary and a figure.
    With ``prediction_files`` (each fold's predictions_subjects.tsv, in the order of the metrics files) the
    table and the summary also get the pooled test rows (``pooled_metrics``). ``baseline_metric_files``:
    rows of models that pooled their own folds (the fMRI branch's SVM and random forest), merged as they are."""
    fold_metric_files = list(fold_metric_files)
    table = read_fold_metrics(fold_metric_files + list(baseline_metric_files))
    pooled = None if prediction_files is None else pooled_metrics(fold_metric_files, prediction_files)
    if pooled is not None:
        table = _sorted(pd.concat([table, pooled], ignore_index=True))
    write_tsv(table, out_tsv)
    summary = summarise(table)
    unlearned = unlearned_folds(table)
    for _, row in unlearned.iterrows():
        log.warning("source %s, task %s, model %s, fold %d did not learn and is left out of the means: %s",
                    row["source"], row["task"], row["model"], int(row["fold"]), row["learned_reason"])
    if "learned" not in table.columns:
        log.warning("the per-fold metrics have no 'learned' column (written before the check existed): every fold "
                    "counts as learned")
    # every pooled row: this run's (leave-one-subject-out CNNs) and those the fold files brought (the baselines')
    write_text(summary_markdown(summary, unlearned, table[table["fold"] == POOLED_FOLD]), out_md)
    metrics_figure(summary, out_png)
    log.info("merged %d metric rows into %s; summary in %s", len(table), out_tsv, out_md)
    return summary
