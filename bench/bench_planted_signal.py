"""Benchmark: how plainly a demo cohort's planted effect shows in its preprocessed images, with no model.

A classifier's ceiling on a generated cohort, measured on the files the workflow wrote: for each task's
patients and controls, the mean intensity of the patients' planted structures (the task's disease group's
LUT labels in ``ground_truth.tsv``) in each subject's own MNI-space parcellation (``dseg_mni``), divided by
the mean of the subject's whole brain (``brain_mni`` where ``dseg_mni`` is labelled). One number per
subject. Per task, the row reports the AUC of that number (patients darker: the effect's sign decides the
direction), the gap between the groups (the controls' lowest minus the patients' highest ratio, for a
darkening effect; positive: no overlap), and, per fold of ``splits/task-T.tsv``, whether the number alone
ranks the fold's test patient(s) beyond its test control(s) (``feature_test_folds_right``), to set beside
the classifier's ``test_folds_right`` (``bench/bench_demo_seeds.py``).

When the number separates every pair by a wide gap and the classifier does not, the classifier, not the
cohort, is what misses (docs/benchmarks.md, "Demo recipe on new cohorts").

    python bench/bench_planted_signal.py --results /tmp/seeds/one_hemisphere/results --cohort one_hemisphere \
        --out planted_signal.tsv

``--truth`` defaults to ``<results>/demo/bids/ground_truth.tsv``; the tasks are the split files' (their
``group`` column names the reference class as the group without planted rows). ``--subjects-out`` also
writes the per-subject ratios.
"""

from __future__ import annotations

import argparse
import platform
from datetime import date
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from bench_demo_seeds import append_rows  # a sibling script, as bench_occlusion_step imports bench_explanations
from sklearn.metrics import roc_auc_score

from headmri.paths import path_table


def subject_ratio(table: dict[str, str], subject: str, labels: list[int]) -> float:
    """Mean brain intensity in ``labels`` of the subject's MNI parcellation over its whole labelled brain."""
    image = np.asarray(nib.load(table["brain_mni"].format(subject=subject)).dataobj, dtype=np.float32)
    dseg = np.asarray(nib.load(table["dseg_mni"].format(subject=subject)).dataobj)
    inside = np.isin(dseg, labels)
    if not inside.any():
        raise ValueError(f"sub-{subject}: none of the labels {labels} in {table['dseg_mni'].format(subject=subject)}")
    return float(image[inside].mean() / image[dseg > 0].mean())


def task_rows(split: pd.DataFrame, truth: pd.DataFrame, table: dict[str, str]) -> tuple[dict, pd.DataFrame]:
    """The task's summary row and its per-subject ratios (``split``: one task's split file)."""
    planted = truth[truth["group"].isin(split["group"].unique())]
    disease = planted["group"].iloc[0]
    labels = sorted(int(v) for v in planted["label"])
    sign = float(np.sign(planted["effect"].mean()))  # -1: the effect darkens, so patients score lower
    people = split.drop_duplicates("participant_id")[["participant_id", "group"]].copy()
    people["ratio"] = [subject_ratio(table, p[4:], labels) for p in people["participant_id"]]
    people["patient"] = people["group"] == disease
    score = dict(zip(people["participant_id"], sign * people["ratio"]))  # higher: more patient-like
    patients, controls = (people.loc[people["patient"] == flag, "ratio"] for flag in (True, False))
    gap = (controls.min() - patients.max()) if sign < 0 else (patients.min() - controls.max())
    right = 0
    folds = sorted(split["fold"].unique())
    for fold in folds:
        test = split[(split["fold"] == fold) & (split["split"] == "test")]
        sick = [score[p] for p in test.loc[test["group"] == disease, "participant_id"]]
        well = [score[p] for p in test.loc[test["group"] != disease, "participant_id"]]
        right += int(min(sick) > max(well))
    auc = roc_auc_score(people["patient"], people["participant_id"].map(score))
    row = {"disease": disease, "planted_labels": len(labels), "feature_auc": round(float(auc), 3),
           "gap": round(float(gap), 3), "patients_ratio": f"{patients.min():.3f}-{patients.max():.3f}",
           "controls_ratio": f"{controls.min():.3f}-{controls.max():.3f}", "feature_test_folds_right": f"{right}/{len(folds)}"}
    return row, people.assign(task=disease)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--truth", type=Path, default=None)
    parser.add_argument("--cohort", required=True, help="a name for the row")
    parser.add_argument("--out", type=Path, required=True, help="TSV the rows are appended to")
    parser.add_argument("--subjects-out", type=Path, default=None)
    args = parser.parse_args()
    table = path_table(str(args.results))
    truth = pd.read_csv(args.truth or args.results / "demo" / "bids" / "ground_truth.tsv", sep="\t")
    rows, subjects = [], []
    for split_tsv in sorted((args.results / "splits").glob("task-*.tsv")):
        row, people = task_rows(pd.read_csv(split_tsv, sep="\t"), truth, table)
        rows.append({"date": date.today().isoformat(), "machine": platform.node(), "cohort": args.cohort,
                     "task": split_tsv.stem[len("task-"):], **row})
        subjects.append(people)
    append_rows(args.out, pd.DataFrame(rows))
    print(pd.DataFrame(rows).to_string(index=False))
    if args.subjects_out:
        pd.concat(subjects).round(4).to_csv(args.subjects_out, sep="\t", index=False)


if __name__ == "__main__":
    main()
