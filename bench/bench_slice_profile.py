"""Benchmark: do a model's held-out slices through the planted structures separate patients from controls,
and do the other slices outvote them?

    python bench/bench_slice_profile.py RESULTS [--source T1w] [--model cnndemo] [--min-voxels 50] [--out TSV]

For a finished demo run (``RESULTS``: a results_dir with ``demo/bids/ground_truth.tsv``, the atlas and the
training jobs' ``predictions_slices.tsv``) it splits every held-out subject's slice probabilities of the
patient class into the slices that hold at least ``--min-voxels`` atlas voxels of the task's planted labels
and the rest, and writes per subject: the mean over all slices (the pipeline's subject score, with
``evaluation.aggregation: mean``), over the planted slices and over the others. Per task it prints how
many (patient, control) pairs of the same fold each of the three means ranks right. A gap between the
planted slices' count and the all-slice count says the model found the effect and the slices without it
decided the subject (docs/benchmarks.md, "Demo recipe on new cohorts").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from headmri.atomic import write_tsv

TASK_GROUP = {"migraine": "migraine", "apth": "APTH", "ppth": "PPTH"}


def planted_slice_mask(atlas: Path, labels: set[int], axis: int, min_voxels: int) -> np.ndarray:
    """Per slice position along ``axis`` of the canonical (RAS) atlas: does it hold ``min_voxels`` planted voxels?"""
    data = np.asarray(nib.as_closest_canonical(nib.load(atlas)).dataobj)
    other = tuple(a for a in range(3) if a != axis)
    return np.isin(data, sorted(labels)).sum(axis=other) >= min_voxels


def subject_rows(slices: pd.DataFrame, planted: np.ndarray, prob: str) -> pd.DataFrame:
    """One row per held-out subject: its mean probability over all, planted and other slices."""
    rows = []
    for pid, own in slices[slices["split"] != "train"].groupby("participant_id"):
        inside = planted[own["slice_index"].to_numpy()]
        rows.append({"participant_id": pid, "split": own["split"].iloc[0], "class_index": int(own["class_index"].iloc[0]),
                     "all_slices": own[prob].mean(), "planted_slices": own.loc[inside, prob].mean(),
                     "other_slices": own.loc[~inside, prob].mean(), "n_planted": int(inside.sum()), "n_slices": len(own)})
    return pd.DataFrame(rows)


def pairs_right(subjects: pd.DataFrame, column: str) -> tuple[float, int]:
    """(patient, control) pairs of one fold that ``column`` ranks right (ties count half), and the pairs."""
    patients = subjects.loc[subjects["class_index"] == 1, column].to_numpy()
    controls = subjects.loc[subjects["class_index"] == 0, column].to_numpy()
    right = (patients[:, None] > controls[None, :]).sum() + 0.5 * (patients[:, None] == controls[None, :]).sum()
    return float(right), patients.size * controls.size


def profile(results: Path, source: str, model: str, min_voxels: int) -> pd.DataFrame:
    truth = pd.read_csv(results / "demo" / "bids" / "ground_truth.tsv", sep="\t")
    atlas = next((results / "atlas").glob("atlas-*_dseg.nii.gz"))
    geometry = json.loads(next((results / "slices" / f"source-{source}").glob("*_slices.json")).read_text())
    tables = []
    for task, group in TASK_GROUP.items():
        labels = set(truth.loc[truth["group"] == group, "label"].astype(int))
        planted = planted_slice_mask(atlas, labels, int(geometry["geometry"]["axis"]), min_voxels)  # once per task
        for fold_dir in sorted((results / "train" / f"source-{source}" / f"task-{task}" / f"model-{model}").glob("fold-*")):
            slices = pd.read_csv(fold_dir / "predictions_slices.tsv", sep="\t")
            table = subject_rows(slices, planted, f"prob_{group}")  # the task's classes are the demo's groups
            tables.append(table.assign(task=task, fold=int(fold_dir.name.split("-")[1])))
    return pd.concat(tables, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--source", default="T1w")
    parser.add_argument("--model", default="cnndemo")
    parser.add_argument("--min-voxels", type=int, default=50)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    table = profile(args.results, args.source, args.model, args.min_voxels)
    if args.out:
        write_tsv(table.round(4), args.out)
    for task, rows in table.groupby("task", sort=False):
        counts = {column: np.sum([pairs_right(fold, column) for _, fold in rows.groupby("fold")], axis=0)
                  for column in ("all_slices", "planted_slices", "other_slices")}
        print(f"{task}: pairs right by " + ", ".join(f"{c} {r:g}/{n:g}" for c, (r, n) in counts.items()))


if __name__ == "__main__":
    main()
