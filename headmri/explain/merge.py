"""Merging regional scores into ranked region tables: per subject, per fold, over folds, with intervals.

The paper's order (structural paper, Methods) is kept: every fold's model is explained on its own
patients, the regional scores are averaged over those patients, and the fold averages are averaged
again, so every fold weighs the same whatever its number of patients. Around it
(docs/explanations.md, "Region statistics"):

- **Normalisation** (``explain.normalisation``). Before any mean, every explained subject's region
  scores are put on a common scale over that subject's regions: ``zscore`` (minus the subject's mean
  over regions, divided by their sd), ``rank`` (the region's percentile among the subject's regions,
  0 = lowest, 1 = highest) or ``none`` (the raw values, the paper's way). Raw values carry the scale of
  each fold model (and of each map): a fold whose maps are 100 times larger would otherwise decide the
  mean over folds. Per subject rather than per fold, because a map's scale varies between subjects of
  one model too (Grad-CAM's gradients grow with the logit), because it makes every patient weigh the
  same in its fold's mean as every fold does in the mean over folds, and because the contrast below
  should compare where a map puts its weight in patients and in controls, not how strong the maps are.
- **Statistic** (``explain.ranking``). ``mean``: the mean over patients, then folds (the paper).
  ``contrast``: Hedges' g of the region's (normalised) score in the fold's patients against the
  fold's controls (reference-class subjects explained for the same disease class), computed within
  each fold, then averaged over folds. g is free of each fold's scale anyway; a region the model looks
  at in everyone (high in patients and in controls) scores 0, a region that stands out in patients
  only scores high.
- **Bootstrap intervals** (``explain.bootstrap`` replicates, ``explain.seed``). Subjects are resampled
  with replacement, stratified by the set of folds they were explained in, patients and controls
  separately: with ``explain.patients: test`` (each subject in one fold) that is a resampling within
  each fold, with ``all`` (each subject in every fold) one draw of subjects that every fold shares, so
  a subject's maps in several folds stay one observation of that subject. Every replicate recomputes
  the statistic and the ranks the way the point estimate was; ``ci_low``/``ci_high`` are the 2.5 and
  97.5 % percentiles of the score and ``rank_ci`` those of the rank ("3-7").

``folds_in_top_k`` counts the folds in which a region is among that fold's k highest on the ranking
statistic, a simple stability measure. Multi-class tasks are ranked separately for each target
(disease) class.

Folds whose model did not learn (``learned`` False in the fold's metrics.tsv, headmri.evaluation.learned)
are left out by default: an untrained model's maps are not evidence, and their raw values can be the
largest of all. ``n_folds`` is then the number of folds the ranking is over and ``n_learned`` how many
of those learned; when no fold learned, the ranking is over all of them and ``n_learned`` is 0 (a flag
on every row, and an error-level log line), not a crash and not a silent average of chance folds.
"""

from __future__ import annotations

import logging
import time
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from headmri import labels as label_tables
from headmri.atomic import write_tsv
from headmri.config import NORMALISATIONS, RANKINGS
from headmri.errors import ConfigError, InputError
from headmri.evaluation.learned import read_fold_learned
from headmri.labels import LabelTable
from headmri.splits import participant_of

log = logging.getLogger(__name__)

REGION_COLUMNS = ("participant_id", "group", "split", "target", "label", "region", "value")
RANKING_COLUMNS = (
    "target", "rank", "region", "label", "hemisphere", "tissue", "structure",
    "score", "ci_low", "ci_high", "rank_ci", "mean", "sd", "contrast",
    "folds_in_top_k", "n_folds", "n_learned", "n_patients", "n_controls", "statistic", "normalisation",
)
CI_PERCENTILES = (2.5, 97.5)  # a 95 % percentile interval


@dataclass(frozen=True)
class RankingOptions:
    """How a ranking is computed (the ``explain`` config keys of the same names).

    ``reference_class``: the group of the control rows (None: every row whose group is not its target)."""

    normalisation: str = "none"
    ranking: str = "mean"
    bootstrap: int = 0
    seed: int = 0
    reference_class: str | None = None

    def __post_init__(self) -> None:
        if self.normalisation not in NORMALISATIONS:
            raise ConfigError(f"explain.normalisation must be one of {list(NORMALISATIONS)}, got {self.normalisation!r}")
        if self.ranking not in RANKINGS:
            raise ConfigError(f"explain.ranking must be one of {list(RANKINGS)}, got {self.ranking!r}")
        if int(self.bootstrap) < 0:
            raise ConfigError(f"explain.bootstrap must be 0 (no intervals) or more, got {self.bootstrap}")


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


def control_rows(table: pd.DataFrame, reference_class: str | None = None) -> pd.Series:
    """Which rows are controls: subjects of the reference class (without one: of a group other than the
    target they were explained for)."""
    if reference_class is None:
        return table["group"].astype(str) != table["target"].astype(str)
    return table["group"].astype(str) == str(reference_class)


def patient_rows(table: pd.DataFrame) -> pd.Series:
    """Which rows are patients explained for their own class."""
    return table["group"].astype(str) == table["target"].astype(str)


def fold_means(table: pd.DataFrame) -> pd.DataFrame:
    """Mean over the patients of one fold: ``target, label, value, n_patients`` (NaN values are skipped;
    rows of controls, explained for a class they are not in, are left out). A participant with several
    images (sessions, runs) counts once: its images' values are averaged first."""
    patients = table[patient_rows(table)]
    per_participant = (patients.assign(participant=patients["participant_id"].map(participant_of))
                       .groupby(["target", "label", "participant"], sort=True)["value"].mean().reset_index())
    grouped = per_participant.groupby(["target", "label"], sort=True)
    return pd.DataFrame({"value": grouped["value"].mean(), "n_patients": grouped["participant"].nunique()}).reset_index()


def normalise_subjects(values: np.ndarray, how: str) -> np.ndarray:
    """Every row (one subject's region scores) on a scale of its own regions; NaN stays NaN.

    ``zscore``: (x - mean) / sd over the row's regions (population sd); a flat row (sd 0) becomes 0.
    ``rank``: the percentile of x among the row's regions, (rank - 1) / (n - 1), ties averaged.
    ``none``: the values as they are.
    """
    if how not in NORMALISATIONS:
        raise ConfigError(f"explain.normalisation must be one of {list(NORMALISATIONS)}, got {how!r}")
    x = np.array(values, dtype=np.float64, ndmin=2)
    if how == "none":
        return x
    present = ~np.isnan(x)
    n = present.sum(axis=1, keepdims=True)
    if how == "rank":
        ranks = pd.DataFrame(x).rank(axis=1, method="average").to_numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 1, (ranks - 1.0) / (n - 1.0), 0.5)
    filled = np.where(present, x, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(axis=1, keepdims=True) / n
        centred = np.where(present, x - mean, 0.0)
        sd = np.sqrt((centred ** 2).sum(axis=1, keepdims=True) / n)
        flat = ~(sd > 1e-12 * np.maximum(np.abs(mean), np.finfo(np.float64).tiny))
        return np.where(present, np.where(flat, 0.0, centred / np.where(flat, 1.0, sd)), np.nan)


@dataclass(frozen=True)
class _Group:
    """One fold's subjects of one role (patients or controls) for one target: IDs and normalised scores."""

    ids: tuple[str, ...]
    values: np.ndarray  # (subjects, regions), NaN where a subject has no value

    def moments(self, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Weighted count, mean and sum of squared deviations per region; ``weights`` (B, subjects) are
        bootstrap counts (None: every subject once). Each is (B, regions) (B = 1 without weights)."""
        x = self.values
        w = np.ones((1, x.shape[0])) if weights is None else weights
        present = ~np.isnan(x)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            n = present.sum(axis=0)
            shift = np.where(n > 0, np.where(present, x, 0.0).sum(axis=0) / np.maximum(n, 1), 0.0)
            centred = np.where(present, x - shift, 0.0)  # shifted for a stable sum of squares
            count = w @ present.astype(np.float64)
            s1 = w @ centred
            mean_c = s1 / count
            ss = np.maximum(w @ (centred ** 2) - count * mean_c ** 2, 0.0)
        return count, mean_c + shift, ss


def hedges_g(patients: tuple[np.ndarray, np.ndarray, np.ndarray], controls: tuple[np.ndarray, np.ndarray, np.ndarray],
             scale: np.ndarray | float = 1.0) -> np.ndarray:
    """Hedges' g (Cohen's d with the pooled sample sd, times the small-sample correction
    1 - 3 / (4 (n_p + n_c) - 9)) from (count, mean, sum of squares) of patients and controls.

    NaN where fewer than 3 subjects in all; with no spread at all (pooled sd below 1e-9 ``scale``) 0
    when the means are equal and NaN when they are not (an effect size without a spread is undefined).
    """
    n_p, m_p, ss_p = patients
    n_c, m_c, ss_c = controls
    n = n_p + n_c
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled = np.sqrt((ss_p + ss_c) / (n - 2.0))
        diff = m_p - m_c
        tol = 1e-9 * np.maximum(np.asarray(scale, dtype=np.float64), np.finfo(np.float64).tiny)
        flat = ~(pooled > tol)
        d = np.where(flat, np.where(np.abs(diff) <= tol, 0.0, np.nan), diff / np.where(flat, 1.0, pooled))
        g = d * (1.0 - 3.0 / (4.0 * n - 9.0))
    return np.where((n_p >= 1) & (n_c >= 1) & (n >= 3), g, np.nan)


def _nanmean(stack: np.ndarray, axis: int = 0) -> np.ndarray:
    present = ~np.isnan(stack)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(present, stack, 0.0).sum(axis=axis) / present.sum(axis=axis)


def _check_same_regions(per_fold: Mapping[int, pd.DataFrame], sources: Mapping[int, str], labels: LabelTable) -> None:
    reference_fold = min(per_fold)
    reference = per_fold[reference_fold]
    for fold, means in per_fold.items():
        for target in sorted(set(reference["target"]) | set(means["target"])):
            want = set(reference.loc[reference["target"] == target, "label"])
            have = set(means.loc[means["target"] == target, "label"])
            if want != have:
                lacks = sorted(want - have)
                extra = sorted(have - want)
                raise InputError(
                    f"fold {fold} (target {target}) does not score the same regions as fold {reference_fold}: "
                    + (f"it lacks {labels.names(lacks)[:10]}" if lacks else "")
                    + ("; " if lacks and extra else "")
                    + (f"it has extra {labels.names(extra)[:10]}" if extra else ""),
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


def _subject_matrix(rows: pd.DataFrame, labels: np.ndarray, *, what: str, fold: int, target: str,
                    source: str | None) -> _Group:
    """The (subjects x regions) raw scores of one fold's patients or controls for one target."""
    if rows.empty:
        return _Group((), np.empty((0, len(labels))))
    if rows.duplicated(["participant_id", "label"]).any():
        first = rows[rows.duplicated(["participant_id", "label"], keep=False)].iloc[0]
        raise InputError(f"fold {fold} (target {target}) has more than one {what} row for {first['participant_id']} and "
                         f"region {first['region']}", path=source)
    extra = sorted(set(rows["label"].astype(int)) - set(labels.tolist()))
    if extra:
        raise InputError(f"fold {fold} (target {target}): the {what} have regions the patients have not: {extra[:10]}",
                         path=source)
    wide = rows.pivot(index="participant_id", columns="label", values="value").reindex(columns=labels)
    participants = wide.index.map(participant_of)
    if participants.has_duplicates:  # several sessions or runs of one participant: it counts once
        log.info("fold %d (target %s): %d %s images from %d participants; each participant's images are averaged, so "
                 "that it counts once in the means, the contrast and the bootstrap", fold, target, len(wide), what,
                 participants.nunique())
        wide = wide.groupby(participants).mean()
    wide = wide.sort_index()
    return _Group(tuple(str(i) for i in wide.index), wide.to_numpy(dtype=np.float64))


def _bootstrap_weights(groups: Mapping[int, _Group], replicates: int, rng: np.random.Generator) -> dict[int, np.ndarray]:
    """Bootstrap counts (replicates, subjects) for every fold's subjects of one role.

    Subjects are drawn with replacement within strata of subjects explained in the same set of folds, as
    many as the stratum holds; a subject drawn k times counts k times in every fold it is in."""
    folds_of: dict[str, list[int]] = {}
    for fold, group in sorted(groups.items()):
        for pid in group.ids:
            folds_of.setdefault(pid, []).append(fold)
    strata: dict[tuple[int, ...], list[str]] = {}
    for pid in sorted(folds_of):
        strata.setdefault(tuple(folds_of[pid]), []).append(pid)
    counts: dict[str, np.ndarray] = {}
    for signature in sorted(strata):
        ids = strata[signature]
        n = len(ids)
        draws = rng.integers(0, n, size=(replicates, n))
        flat = (np.arange(replicates)[:, None] * n + draws).ravel()
        table = np.bincount(flat, minlength=replicates * n).reshape(replicates, n).astype(np.float64)
        for j, pid in enumerate(ids):
            counts[pid] = table[:, j]
    return {fold: (np.stack([counts[pid] for pid in group.ids], axis=1) if group.ids else np.zeros((replicates, 0)))
            for fold, group in groups.items()}


def _fold_statistics(patients: _Group, controls: _Group, w_p: np.ndarray | None, w_c: np.ndarray | None,
                     scale: np.ndarray, with_contrast: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """The fold's mean over patients and (with controls) Hedges' g, each (B, regions)."""
    moments_p = patients.moments(w_p)
    mean = moments_p[1]
    if not with_contrast:
        return mean, None
    return mean, hedges_g(moments_p, controls.moments(w_c), scale)


def _ranks(scores: np.ndarray) -> np.ndarray:
    """Ranks (1 = highest) along the last axis; ties in column order (LUT code), NaN last."""
    order = np.argsort(-scores, axis=-1, kind="stable")
    return np.argsort(order, axis=-1, kind="stable") + 1


def _rank_target(target: str, folds: list[int], patients: Mapping[int, _Group], controls: Mapping[int, _Group],
                 labels: np.ndarray, top_k: int, options: RankingOptions, sources: Mapping[int, str]) -> pd.DataFrame:
    has_controls = {fold: len(controls[fold].ids) > 0 for fold in folds}
    if options.ranking == "contrast":
        lacking = [fold for fold in folds if not has_controls[fold]]
        if lacking:
            raise InputError(
                f"explain.ranking is contrast, but fold {lacking[0]} has no controls explained for target {target}: "
                "the explain jobs must also explain the controls (explain.controls)",
                path=sources.get(lacking[0]),
            )
    with_contrast = all(has_controls.values())
    scales = {}
    for fold in folds:
        both = np.concatenate([patients[fold].values, controls[fold].values], axis=0)
        scales[fold] = np.nanmax(np.abs(both), axis=0, initial=0.0) if both.size else np.zeros(len(labels))

    means, contrasts = [], []
    for fold in folds:
        mean, g = _fold_statistics(patients[fold], controls[fold], None, None, scales[fold], with_contrast)
        means.append(mean[0])
        contrasts.append(g[0] if g is not None else np.full(len(labels), np.nan))
    means, contrasts = np.stack(means), np.stack(contrasts)  # (folds, regions)
    fold_scores = contrasts if options.ranking == "contrast" else means
    score = _nanmean(fold_scores)
    if options.ranking == "contrast" and np.isnan(score).all():
        raise InputError(f"target {target}: the patient-versus-control contrast is undefined in every fold (Hedges' g "
                         "needs at least 3 subjects per fold, patients and controls together, and a spread); explain more "
                         "subjects per fold (explain.patients: all) or rank by the mean", path=sources.get(folds[0]))
    n_present = (~np.isnan(means)).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = np.sqrt(np.where(np.isnan(means), 0.0, (means - _nanmean(means)) ** 2).sum(axis=0) / (n_present - 1))
    sd = np.where(n_present > 1, sd, np.nan)
    fold_rank = (fold_scores[:, None, :] > fold_scores[:, :, None]).sum(axis=-1) + 1  # ties share the better rank
    in_top = (fold_rank <= top_k) & ~np.isnan(fold_scores)

    ci_low = ci_high = np.full(len(labels), np.nan)
    rank_ci = [""] * len(labels)
    if options.bootstrap > 0:
        started = time.perf_counter()
        rng = np.random.default_rng([int(options.seed), zlib.crc32(str(target).encode())])
        w_p = _bootstrap_weights(patients, options.bootstrap, rng)
        w_c = _bootstrap_weights(controls, options.bootstrap, rng) if with_contrast else {}
        replicate = []
        for fold in folds:
            mean, g = _fold_statistics(patients[fold], controls[fold], w_p[fold], w_c.get(fold), scales[fold],
                                       with_contrast and options.ranking == "contrast")
            replicate.append(g if options.ranking == "contrast" else mean)
        boot = _nanmean(np.stack(replicate))  # (B, regions)
        with warnings.catch_warnings():  # a region without a value in any replicate: NaN, no warning
            warnings.simplefilter("ignore", RuntimeWarning)
            ci_low, ci_high = np.nanpercentile(boot, CI_PERCENTILES, axis=0)
        ranks = _ranks(boot)
        low = np.percentile(ranks, CI_PERCENTILES[0], axis=0, method="lower").astype(int)
        high = np.percentile(ranks, CI_PERCENTILES[1], axis=0, method="higher").astype(int)
        rank_ci = [f"{lo}-{hi}" for lo, hi in zip(low, high)]
        log.info("target %s: %d bootstrap replicates over %d patients%s in %.2f s", target, options.bootstrap,
                 len({pid for g in patients.values() for pid in g.ids}),
                 f" and {len({pid for g in controls.values() for pid in g.ids})} controls" if with_contrast else "",
                 time.perf_counter() - started)

    return pd.DataFrame({
        "target": target, "label": labels.astype(int), "score": score, "ci_low": ci_low, "ci_high": ci_high,
        "rank_ci": rank_ci, "mean": _nanmean(means), "sd": sd, "contrast": _nanmean(contrasts),
        "folds_in_top_k": in_top.sum(axis=0).astype(int), "n_folds": n_present.astype(int),
        "n_patients": sum(len(patients[f].ids) for f in folds), "n_controls": sum(len(controls[f].ids) for f in folds),
        "statistic": options.ranking, "normalisation": options.normalisation,
    })


def merge_folds(fold_tables: Mapping[int, pd.DataFrame], top_k: int, sources: Mapping[int, str] | None = None, *,
                learned: Mapping[int, bool | None] | None = None, exclude_unlearned: bool = True,
                options: RankingOptions | None = None, labels: LabelTable | None = None) -> pd.DataFrame:
    """The ranked table (columns ``RANKING_COLUMNS``) from per-fold regional tables keyed by fold number.

    ``labels``: the source's label table, which names the regions and gives their hemisphere, tissue and
    structure (default: FreeSurfer's).
    ``learned``: fold -> whether its model learned (None or absent: unknown, counted as learned); see
    ``folds_to_merge`` for what ``exclude_unlearned`` leaves out. ``options``: normalisation, statistic,
    bootstrap (default: the paper's way, raw means and no intervals).
    """
    options = options or RankingOptions()
    names = labels if labels is not None else label_tables.load()
    if not fold_tables:
        raise InputError("no fold tables to merge")
    if top_k < 1:
        raise ValueError("top_k must be at least 1")
    sources = sources or {}
    kept, n_learned = folds_to_merge(fold_tables, learned, exclude_unlearned)
    fold_tables = {int(fold): table for fold, table in fold_tables.items() if int(fold) in kept}
    per_fold = {int(fold): fold_means(table) for fold, table in fold_tables.items()}
    empty = [fold for fold, means in per_fold.items() if means.empty]
    if empty:
        raise InputError(f"fold(s) {empty} have no patients with regional values", path=sources.get(empty[0]))
    _check_same_regions(per_fold, sources, names)

    parts = []
    reference = per_fold[min(per_fold)]
    for target in sorted(set(reference["target"])):
        labels = np.array(sorted(set(reference.loc[reference["target"] == target, "label"].astype(int))))
        patients, controls = {}, {}
        for fold, table in sorted(fold_tables.items()):
            rows = table[table["target"].astype(str) == str(target)]
            source = sources.get(fold)
            groups = {}
            for role, mask in (("patient", patient_rows(rows)), ("control", control_rows(rows, options.reference_class))):
                raw = _subject_matrix(rows[mask], labels, what=role + "s", fold=fold, target=target, source=source)
                groups[role] = _Group(raw.ids, normalise_subjects(raw.values, options.normalisation)
                                      if raw.ids else raw.values)
            patients[fold], controls[fold] = groups["patient"], groups["control"]
        parts.append(_rank_target(str(target), sorted(fold_tables), patients, controls, labels, top_k, options, sources))
    merged = pd.concat(parts, ignore_index=True)
    merged["n_learned"] = n_learned

    codes = merged["label"].astype(int)
    merged["region"] = names.column(codes, "name")
    merged["hemisphere"] = names.column(codes, "hemisphere")
    merged["tissue"] = names.column(codes, "tissue")
    merged["structure"] = names.column(codes, "region")
    # highest score first; equal scores keep the label table's code order so the ranking is reproducible
    merged = merged.sort_values(["target", "score", "label"], ascending=[True, False, True], na_position="last")
    merged["rank"] = merged.groupby("target").cumcount() + 1
    return merged.loc[:, list(RANKING_COLUMNS)].reset_index(drop=True)


def rank_regions(fold_paths: Mapping[int, str | Path], top_k: int, metrics_paths: Mapping[int, str | Path] | None = None,
                 exclude_unlearned: bool = True, options: RankingOptions | None = None,
                 labels: LabelTable | None = None) -> pd.DataFrame:
    """Read every fold's ``regions.tsv`` (and, when given, its training ``metrics.tsv`` for the ``learned``
    flag) and merge them (the ``rank_regions`` rule's library call)."""
    tables = {int(fold): read_fold_table(path) for fold, path in fold_paths.items()}
    learned = {int(fold): read_fold_learned(path) for fold, path in (metrics_paths or {}).items()}
    return merge_folds(tables, top_k, sources={int(f): str(p) for f, p in fold_paths.items()}, learned=learned,
                       exclude_unlearned=exclude_unlearned, options=options, labels=labels)


def write_ranking(fold_paths: Mapping[int, str | Path], top_k: int, out_tsv: str | Path,
                  metrics_paths: Mapping[int, str | Path] | None = None, exclude_unlearned: bool = True,
                  options: RankingOptions | None = None, labels: LabelTable | None = None) -> pd.DataFrame:
    """``rank_regions`` written to ``out_tsv`` (atomically); returns the table."""
    ranking = rank_regions(fold_paths, top_k, metrics_paths, exclude_unlearned, options, labels)
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
    table = label_tables.lut()
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
