"""The fMRI branch's workflow jobs (one function per job; scripts/fmri_*.py call them).

- ``write_atlas``: AAL-116 on the indicators' grid, and its label table (one for every subject)
- ``indicator_job``: one subject's indicator maps, brain mask and RFCS vector (``compute_indicators``)
- ``baseline_job``: SVM and random forest on the RFCS vectors of one task, on the task's split file (the
  CNNs' folds) and leave-one-subject-out; metrics rows in the columns of the CNN folds' metrics.tsv,
  permutation importances as a ranked AAL region table
- ``demographics_job``: the paper's Table 1 for the run's participants (either branch)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from headmri.atomic import save_nifti, write_tsv
from headmri.errors import InputError
from headmri.evaluation.learned import LEARNED_COLUMNS
from headmri.evaluation.metrics import FOLD_COLUMNS
from headmri.fmri import baselines as bl
from headmri.fmri.atlas import aal116, label_table, on_grid
from headmri.fmri.bold import BoldFiles, mni_grid
from headmri.fmri.demographics import demographics_table
from headmri.fmri.indicators import IndicatorSettings, compute_indicators
from headmri.fmri.validation import leave_one_subject_out_images
from headmri.paths import baseline_key
from headmri.splits import read_split

log = logging.getLogger(__name__)

RFCS_COLUMNS = ["label", "region", "rfcs"]
BASELINE_REASON = "not checked: a fixed-hyperparameter scikit-learn baseline has no training loss"


def write_atlas(voxel_mm: int, out_nifti: str | Path, out_tsv: str | Path) -> None:
    """AAL-116 resampled (nearest) to the MNI grid of ``voxel_mm``, and its label table."""
    grid = mni_grid(int(voxel_mm))
    reference = nib.Nifti1Image(np.zeros(grid.shape, np.uint8), grid.affine)
    atlas = on_grid(aal116(), reference)
    save_nifti(atlas.image, out_nifti)
    write_tsv(label_table(atlas), out_tsv)
    log.info("AAL-116 on the %d mm MNI grid %s: %d regions", voxel_mm, grid.shape, len(atlas.ids))


@dataclass(frozen=True)
class IndicatorOutputs:
    maps: Mapping[str, str]  # indicator name -> NIfTI path (every name of headmri.fmri.indicators.MAPS)
    mask: str
    rfcs_tsv: str


def indicator_job(files: BoldFiles, settings: IndicatorSettings, outputs: IndicatorOutputs) -> None:
    """Every indicator map of one subject, the mask they were computed in, and the RFCS vector."""
    result = compute_indicators(files, settings)
    for name, path in outputs.maps.items():
        save_nifti(result.maps[name], path)
    save_nifti(result.mask, outputs.mask)
    vector = pd.DataFrame({"label": list(result.rfcs.atlas.ids), "region": list(result.rfcs.atlas.names),
                           "rfcs": result.rfcs.strength}, columns=RFCS_COLUMNS)
    write_tsv(vector, outputs.rfcs_tsv)
    log.info("%s: %d mask voxels; RFCS strongest in %s", files.subject, int(np.asarray(result.mask.dataobj).sum()),
             ", ".join(vector.nlargest(3, "rfcs")["region"]))


def read_rfcs(paths: Mapping[str, str | Path]) -> pd.DataFrame:
    """Image (``sub-<image key>``, as the split's participant_id) -> its RFCS TSV, as the baselines' feature
    table (one row per image, one column per AAL region)."""
    vectors, names = {}, None
    for pid, path in paths.items():
        table = pd.read_csv(path, sep="\t")
        if list(table.columns) != RFCS_COLUMNS:
            raise InputError(f"an RFCS vector has the columns {list(table.columns)}, not {RFCS_COLUMNS}", subject=pid, path=path)
        if names is not None and list(table["region"]) != names:
            raise InputError("the RFCS vector's regions differ from the other subjects'", subject=pid, path=path)
        names = list(table["region"])
        vectors[pid] = table["rfcs"].to_numpy(float)
    return bl.feature_table(vectors, names or [])


@dataclass(frozen=True)
class BaselineOutputs:
    metrics: str  # rows for tables/metrics.tsv
    importance: Mapping[str, str]  # model name -> ranked AAL region table


# the columns of a CNN fold's metrics.tsv (headmri.training), then how the folds were made
METRIC_ROW_COLUMNS = ["source", *FOLD_COLUMNS, *LEARNED_COLUMNS, "validation"]


def _metric_rows(metrics: pd.DataFrame, key: str) -> pd.DataFrame:
    """The test rows, named ``key``; the training-only columns (selected epoch, losses) empty."""
    rows = metrics[metrics["split"] == "test"].assign(model=key, learned_reason=BASELINE_REASON)
    return rows.reindex(columns=METRIC_ROW_COLUMNS)


def _ranked_importance(importance: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Mean permutation importance per AAL region over folds, ranked, with the region's code and sides."""
    summary = bl.importance_summary(importance).rename(columns={"feature": "name"})
    summary.insert(0, "rank", np.arange(1, len(summary) + 1))
    out = summary.merge(labels[["label", "name", "hemisphere", "tissue", "region"]], on="name", how="left")
    return out[["rank", "name", "label", "hemisphere", "tissue", "region", "importance", "folds"]]


def baseline_job(rfcs: Mapping[str, str | Path], split_tsv: str | Path, task: bl.Task, models: Sequence[str],
                 settings: bl.BaselineSettings, outputs: BaselineOutputs, labels_tsv: str | Path,
                 loso: bool = True) -> pd.DataFrame:
    """Each of ``models`` on the task's split and, with ``loso``, leave-one-subject-out over the same
    participants (one pooled test row, fold 0, model ``<key>loso``). On the split, a fold's training and
    validation subjects fit the model (``settings.fit_splits``: the baselines choose nothing, so the CNNs'
    validation subjects are training data for them) and its test subjects, the CNNs' test subjects, give the
    rows. ``rfcs`` is keyed by image (``sub-01_ses-2``), as the split's rows are: a participant with several
    sessions gives several samples, all in its participant's set of each fold."""
    features = read_rfcs(rfcs)
    split = read_split(split_tsv)
    labels = pd.read_csv(labels_tsv, sep="\t")
    # on participants: a held-out participant's every image is tested, none of them trains
    loso_split = leave_one_subject_out_images(split, task.classes) if loso else None
    loso_task = bl.Task(task.name, task.classes, task.source, "loso")
    rows = []
    for model in models:
        result = bl.evaluate_baseline(features, split, task, model, settings)
        rows.append(_metric_rows(result.metrics, baseline_key(model)))
        write_tsv(_ranked_importance(result.importance, labels), outputs.importance[model])
        if loso_split is not None:
            pooled = bl.pooled_test_metrics(bl.evaluate_baseline(features, loso_split, loso_task, model, settings),
                                            loso_task, model)
            rows.append(_metric_rows(pooled, baseline_key(model) + "loso"))
    table = pd.concat(rows, ignore_index=True)
    write_tsv(table, outputs.metrics)
    log.info("task %s baselines:\n%s", task.name, table[["model", "fold", "split", "accuracy", "auc"]].to_string())
    return table


def demographics_job(participants_tsv: str | Path, out_tsv: str | Path, groups: Sequence[str],
                     subjects: Sequence[str]) -> pd.DataFrame:
    """Table 1 for the run's participants (``subjects``, labels) in ``groups`` (config order)."""
    table = pd.read_csv(participants_tsv, sep="\t", na_values=["n/a"], dtype={"participant_id": str})
    wanted = {f"sub-{s}" for s in subjects}
    table = table[table["participant_id"].isin(wanted)]
    present = [g for g in groups if g in set(table["group"])]
    out = demographics_table(table, present)
    write_tsv(out, out_tsv)
    return out
