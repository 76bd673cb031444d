"""Subject-level split tables for the baselines: 5-fold cross-validation and leave-one-subject-out.

Same columns as headmri.splits writes (participant_id, label, group, class_index, fold, split; ``subject``
for a table of images, ``leave_one_subject_out_images``), so a
baseline runs unchanged on these or on the CNNs' own split file. Only train and test: the baselines
choose nothing on held-out subjects (fixed hyperparameters), so they need no validation set. Every table
is checked with headmri.splits.check_leakage before it is returned.

The k-fold table uses scikit-learn's StratifiedKFold over the subjects (sorted by id, shuffled with the
seed): adding a subject reshuffles the folds, which the hash-based headmri.splits avoids for the CNNs; the
baselines refit in seconds, so it matters less here, and a classical k-fold tests every subject once.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from sklearn.model_selection import StratifiedKFold

from headmri import splits
from headmri.errors import InputError
from headmri.splits import COLUMNS, check_leakage


def _members(participants: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """participant_id (with sub-), label, group, class_index of the subjects of ``classes``, sorted by id."""
    missing = [c for c in ("participant_id", "group") if c not in participants.columns]
    if missing:
        raise InputError(f"the participants table lacks the column(s) {missing}")
    table = participants[participants["group"].isin(classes)].copy()
    ids = table["participant_id"].astype(str)
    table["participant_id"] = ids.where(ids.str.startswith("sub-"), "sub-" + ids)
    if table["participant_id"].duplicated().any():
        raise InputError(f"participants appear more than once: {sorted(set(table['participant_id'][table['participant_id'].duplicated()]))}")
    absent = [c for c in classes if c not in set(table["group"])]
    if absent:
        raise InputError(f"classes {absent} have no subjects")
    table["label"] = table["participant_id"].str[4:]
    table["class_index"] = table["group"].map({c: i for i, c in enumerate(classes)})
    return table.sort_values("participant_id", ignore_index=True)[["participant_id", "label", "group", "class_index"]]


def _table(members: pd.DataFrame, test_sets: list[set[str]]) -> pd.DataFrame:
    rows = []
    for fold, test in enumerate(test_sets, start=1):
        in_test = members["participant_id"].isin(test)
        part = members.assign(fold=fold, split=in_test.map({True: "test", False: "train"}))
        rows.append(part)
    out = pd.concat(rows, ignore_index=True)[COLUMNS]
    check_leakage(out)
    return out


def leave_one_subject_out(participants: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """One fold per subject: that subject is the test set, every other subject of the classes trains. The one
    leave-one-subject-out of the project (``headmri.splits.leave_one_subject_out``, what ``splits.scheme: loso``
    gives the CNNs) without validation subjects."""
    split = splits.leave_one_subject_out(participants[["participant_id", "group"]], classes, val_per_class=0)
    check_leakage(split)
    return split[COLUMNS]


def leave_one_subject_out_images(split: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """Leave-one-subject-out over the participants of a split table whose rows are images (its ``subject``
    column; without one every row is a participant): one fold per participant, tested with all its images,
    every image of every other participant training. A session never trains while another session of the
    same participant is tested."""
    unit = splits.SUBJECT if splits.SUBJECT in split.columns else "participant_id"
    members = split.drop_duplicates(unit)[[unit, "group"]].rename(columns={unit: "participant_id"})
    images = {str(key): str(pid)[4:] for key, pid in zip(split["label"], split[unit])}
    out = splits.expand_to_images(leave_one_subject_out(members, classes), images)
    check_leakage(out)
    return out


def stratified_kfold(participants: pd.DataFrame, classes: Sequence[str], folds: int = 5, seed: int = 13) -> pd.DataFrame:
    """``folds`` folds whose test sets partition the subjects, class proportions kept per fold."""
    members = _members(participants, classes)
    smallest = int(members["class_index"].value_counts().min())
    if smallest < folds:
        raise InputError(f"{folds}-fold cross-validation needs at least {folds} subjects per class; the smallest class has {smallest}")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    ids = members["participant_id"].to_numpy()
    tests = [set(ids[test]) for _, test in splitter.split(ids, members["class_index"])]
    return _table(members, tests)
