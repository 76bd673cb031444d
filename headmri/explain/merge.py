"""Merging regional activations: mean over patients within each fold, then mean (and sd) over folds, ranked.

This is the paper's order (structural paper, Methods): every fold's model is explained on its own
patients, the regional scores are averaged over those patients, and the fold averages are averaged
again, so every fold weighs the same whatever its number of patients. ``folds_in_top_k`` counts the
folds in which a region is among that fold's k highest, a simple stability measure.

Multi-class tasks are ranked separately for each target (disease) class.

Folds whose model did not learn (``learned`` False in the fold's metrics.tsv, headmri.evaluation.learned)
are left out by default: an untrained model's maps are not evidence, and their raw values can be the
largest of all. ``n_folds`` is then the number of folds the ranking is over and ``n_learned`` how many
of those learned; when no fold learned, the ranking is over all of them and ``n_learned`` is 0 (a flag
on every row, and an error-level log line), not a crash and not a silent average of chance folds.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import pandas as pd

from headmri import labels as lut_labels
from headmri.atomic import write_tsv
from headmri.errors import InputError
from headmri.evaluation.learned import read_fold_learned

log = logging.getLogger(__name__)

REGION_COLUMNS = ("participant_id", "group", "split", "target", "label", "region", "value")
RANKING_COLUMNS = (
    "target", "rank", "region", "label", "hemisphere", "tissue", "structure",
    "mean", "sd", "folds_in_top_k", "n_folds", "n_learned", "n_patients",
)


def read_fold_table(path: str | Path) -> pd.DataFrame:
    """One fold's ``regions.tsv``, checked for its columns."""
    try:
        table = pd.read_csv(path, sep="\t", dtype={"participant_id": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise InputError(f"cannot read the regional activation table: {error}", path=path) from error
    missing = [c for c in REGION_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"the regional activation table lacks columns {missing}", path=path)
    return table


def fold_means(table: pd.DataFrame) -> pd.DataFrame:
    """Mean over patients of one fold: ``target, label, value, n_patients`` (NaN values are skipped)."""
    grouped = table.groupby(["target", "label"], sort=True)
    return pd.DataFrame(
        {"value": grouped["value"].mean(), "n_patients": grouped["participant_id"].nunique()}
    ).reset_index()


def _check_same_regions(per_fold: Mapping[int, pd.DataFrame], sources: Mapping[int, str]) -> None:
    reference_fold = min(per_fold)
    reference = per_fold[reference_fold]
    for fold, means in per_fold.items():
        for target in sorted(set(reference["target"]) | set(means["target"])):
            want = set(reference.loc[reference["target"] == target, "label"])
            have = set(means.loc[means["target"] == target, "label"])
            if want != have:
                table = lut_labels.lut()
                name = lambda c: str(table.loc[c, "name"]) if c in table.index else str(c)  # noqa: E731
                lacks = sorted(want - have)
                extra = sorted(have - want)
                raise InputError(
                    f"fold {fold} (target {target}) does not score the same regions as fold {reference_fold}: "
                    + (f"it lacks {[name(c) for c in lacks][:10]}" if lacks else "")
                    + ("; " if lacks and extra else "")
                    + (f"it has extra {[name(c) for c in extra][:10]}" if extra else ""),
                    path=sources.get(fold),
                )


def folds_to_merge(folds, learned: Mapping[int, bool | None] | None, exclude_unlearned: bool) -> tuple[list[int], int]:
    """The folds a ranking is over and how many of them learned (an unknown flag counts as learned).

    With ``exclude_unlearned`` the folds flagged not learned are left out, unless that leaves none: then
    all are kept, and the count of learned folds (0) flags the ranking.
    """
    folds = sorted(int(f) for f in folds)
    learned = {int(f): v for f, v in (learned or {}).items()}
    unlearned = [f for f in folds if learned.get(f) is False]
    kept = [f for f in folds if f not in unlearned] if exclude_unlearned else folds
    if not kept:
        log.error("no fold learned (folds %s): the ranking is over all of them, every one at chance level, and is "
                  "no evidence (n_learned = 0 in the table)", unlearned)
        return folds, 0
    if exclude_unlearned and unlearned:
        log.warning("fold(s) %s did not learn and are left out of the ranking, which is over fold(s) %s",
                    unlearned, kept)
    elif unlearned:
        log.warning("fold(s) %s did not learn but are ranked with the others (explain.exclude_unlearned is off)",
                    unlearned)
    return kept, sum(1 for f in kept if learned.get(f) is not False)


def merge_folds(fold_tables: Mapping[int, pd.DataFrame], top_k: int, sources: Mapping[int, str] | None = None, *,
                learned: Mapping[int, bool | None] | None = None, exclude_unlearned: bool = True) -> pd.DataFrame:
    """The ranked table (columns ``RANKING_COLUMNS``) from per-fold regional tables keyed by fold number.

    ``learned``: fold -> whether its model learned (None or absent: unknown, counted as learned); see
    ``folds_to_merge`` for what ``exclude_unlearned`` leaves out.
    """
    if not fold_tables:
        raise InputError("no fold tables to merge")
    if top_k < 1:
        raise ValueError("top_k must be at least 1")
    kept, n_learned = folds_to_merge(fold_tables, learned, exclude_unlearned)
    fold_tables = {int(fold): table for fold, table in fold_tables.items() if int(fold) in kept}
    per_fold = {int(fold): fold_means(table) for fold, table in fold_tables.items()}
    empty = [fold for fold, means in per_fold.items() if means.empty]
    if empty:
        raise InputError(f"fold(s) {empty} have no patients with regional values", path=(sources or {}).get(empty[0]))
    _check_same_regions(per_fold, sources or {})

    long = pd.concat([means.assign(fold=fold) for fold, means in per_fold.items()], ignore_index=True)
    # rank within each fold and target: 1 = highest; ties share the better rank (method "min")
    long["fold_rank"] = long.groupby(["fold", "target"])["value"].rank(ascending=False, method="min")
    long["in_top_k"] = long["fold_rank"] <= top_k
    grouped = long.groupby(["target", "label"], sort=True)
    merged = pd.DataFrame(
        {
            "mean": grouped["value"].mean(),
            "sd": grouped["value"].std(ddof=1),  # sample sd over folds; NaN with one fold
            "folds_in_top_k": grouped["in_top_k"].sum().astype(int),
            "n_folds": grouped["value"].count(),
            "n_patients": grouped["n_patients"].sum(),
        }
    ).reset_index()
    merged["n_learned"] = n_learned

    table = lut_labels.lut()
    codes = merged["label"].astype(int)
    merged["region"] = [str(table.loc[c, "name"]) for c in codes]
    merged["hemisphere"] = [str(table.loc[c, "hemisphere"]) for c in codes]
    merged["tissue"] = [str(table.loc[c, "tissue"]) for c in codes]
    merged["structure"] = [str(table.loc[c, "region"]) for c in codes]
    # highest mean first; equal means keep LUT order so the ranking is reproducible
    merged = merged.sort_values(["target", "mean", "label"], ascending=[True, False, True], na_position="last")
    merged["rank"] = merged.groupby("target").cumcount() + 1
    return merged.loc[:, list(RANKING_COLUMNS)].reset_index(drop=True)


def rank_regions(fold_paths: Mapping[int, str | Path], top_k: int, metrics_paths: Mapping[int, str | Path] | None = None,
                 exclude_unlearned: bool = True) -> pd.DataFrame:
    """Read every fold's ``regions.tsv`` (and, when given, its training ``metrics.tsv`` for the ``learned``
    flag) and merge them (the ``rank_regions`` rule's library call)."""
    tables = {int(fold): read_fold_table(path) for fold, path in fold_paths.items()}
    learned = {int(fold): read_fold_learned(path) for fold, path in (metrics_paths or {}).items()}
    return merge_folds(tables, top_k, sources={int(f): str(p) for f, p in fold_paths.items()}, learned=learned,
                       exclude_unlearned=exclude_unlearned)


def write_ranking(fold_paths: Mapping[int, str | Path], top_k: int, out_tsv: str | Path,
                  metrics_paths: Mapping[int, str | Path] | None = None, exclude_unlearned: bool = True) -> pd.DataFrame:
    """``rank_regions`` written to ``out_tsv`` (atomically); returns the table."""
    ranking = rank_regions(fold_paths, top_k, metrics_paths, exclude_unlearned)
    write_tsv(ranking, out_tsv, float_format="%.6g")
    return ranking


def planted_recall(ranking_tsv: str | Path, ground_truth_tsv: str | Path, top_k: int, group: str | None = None) -> float:
    """The fraction of planted structures found among the top ``top_k`` rows of a ranking.

    Counting (docs/explanations.md): a planted structure is the LUT's hemisphere- and tissue-free
    ``region`` (``postcentral``, ``Hippocampus``); it counts as found if ANY of its labels (ctx-lh-,
    ctx-rh-, wm-lh-, wm-rh-, Left-, Right-) is in the top k. The ground truth names structures or full
    LUT names in a ``region`` column (optionally a ``group`` column, filtered by ``group``). A multi-class
    ranking is read for the target ``group``.
    """
    ranking = pd.read_csv(ranking_tsv, sep="\t")
    truth = pd.read_csv(ground_truth_tsv, sep="\t")
    if "region" not in truth.columns:
        raise InputError(f"the ground truth has no 'region' column (columns: {list(truth.columns)})", path=ground_truth_tsv)
    if group is not None and "group" in truth.columns:
        truth = truth[truth["group"] == group]
    if group is not None and "target" in ranking.columns and (ranking["target"] == group).any():
        ranking = ranking[ranking["target"] == group]
    table = lut_labels.lut()
    structure_of_name = dict(zip(table["name"], table["region"]))
    structures = set(table["region"])
    planted = set()
    for name in truth["region"].astype(str):
        if name in structure_of_name:
            planted.add(structure_of_name[name])
        elif name in structures:
            planted.add(name)
        else:
            raise InputError(f"the ground truth names {name!r}, which is neither a LUT region name nor a structure", path=ground_truth_tsv)
    if not planted:
        raise InputError("the ground truth lists no planted regions" + (f" for group {group!r}" if group else ""), path=ground_truth_tsv)
    top = ranking.sort_values("rank").head(top_k)
    found = {structure_of_name.get(str(name), str(name)) for name in top["region"]}
    return len(planted & found) / len(planted)
