"""Subject-level cross-validation splits that stay put when subjects are added.

Every subject of a class gets, from SHA-256 hashes of (seed, participant_id), a *fold bucket* (the fold
whose hash ``h(seed, id, fold)`` is highest: rendezvous hashing) and a *priority* (``h(seed, id)``).
Within each bucket the members are ranked by priority (interleaved by site when a ``site`` column exists);
fold f's test set is the first ``t`` of bucket f, its validation set the *last* ``v`` of bucket f+1
(cyclically), and everyone else of the task trains in fold f. Hence test sets are disjoint across folds,
validation is disjoint from test within a fold, and a new subject only ever touches its own bucket.
Validating on the bucket's tail rather than its head keeps fold f's validation subjects out of fold f+1's
test set whenever the bucket has ``t + v`` members; with the head, two folds with ``v = t`` would validate
on each other's test subjects and so train on exactly the same subjects.
With ``v = 0`` (``training.selection: last`` chooses nothing on validation) no fold validates: those
subjects train, and every fold tests the same subjects as with any other ``v``.
The exact guarantee, and how buckets short of members borrow, are in docs/splits.md.

``scheme: loso`` (``leave_one_subject_out``) is leave-one-subject-out: one fold per participant, who is
its test set; validation subjects (``val_per_class`` of every class) come from the others by rendezvous
hashing on (seed, test subject, candidate), so they differ between folds and a new subject only changes
the folds whose validation it wins. With ``val_per_class`` 0 (the fMRI baselines, which choose nothing)
everyone else trains.

Hand-written because scikit-learn's splitters (StratifiedKFold, StratifiedGroupKFold) assign by position
after a shuffle, so adding one subject reshuffles everyone.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import pandas as pd

from headmri.atomic import write_tsv
from headmri.errors import InputError, LeakageError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
COLUMNS = ["participant_id", "label", "group", "class_index", "fold", "split"]
# A row is an image: participant_id and label name the image (sub-01_ses-02 and 01_ses-02, or sub-01 and
# 01 for a subject with one image); `subject` names its participant, the unit the split is made on.
SUBJECT = "subject"
SCHEMES = ("balanced", "proportional", "loso")


def _hash(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()[:16], "big")


def participant_of(image_id: str) -> str:
    """The participant (``sub-01``) of an image row's ``participant_id`` (``sub-01_ses-02_run-2``): BIDS labels
    hold no underscore, so the participant is everything before the first one."""
    return str(image_id).split("_", 1)[0]


def _participant_id(value: str) -> str:
    value = str(value)
    return value if value.startswith("sub-") else f"sub-{value}"


@dataclass(frozen=True)
class SetSizes:
    """Test and validation subjects per fold for one class, and the least class size they need."""

    test: int
    val: int
    folds: int

    def __post_init__(self) -> None:
        if self.test < 1 or self.val < 0:
            raise ValueError(f"every fold needs at least one test subject per class and no negative number of "
                             f"validation subjects, got test={self.test}, val={self.val}")

    @property
    def held(self) -> int:  # members each bucket must have: its fold's test set and the previous fold's validation set
        return max(self.test, self.val)

    @property
    def needed(self) -> int:  # disjoint test sets over folds, and at least one training subject per fold
        return max(self.folds * self.held, self.test + self.val + 1)


def set_sizes(n: int, scheme: str, folds: int, val_per_class: int, test_per_class: int,
              proportional_val: float, proportional_test: float) -> SetSizes:
    if scheme == "balanced":
        return SetSizes(test=test_per_class, val=val_per_class, folds=folds)
    if scheme == "proportional":  # floor, so that folds x test never exceeds the class for test <= 1/folds
        return SetSizes(test=max(1, int(proportional_test * n)), val=max(1, int(proportional_val * n)), folds=folds)
    raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")


def _site_interleaved(members: list[str], priority: dict[str, int], site: dict[str, str] | None) -> list[str]:
    """Members by priority; with sites, interleaved so every prefix mirrors the bucket's site mix
    (Sainte-Lague / Webster order: the m-th member of a site of n gets the key (m + 0.5) / n)."""
    by_priority = sorted(members, key=priority.__getitem__)
    if site is None:
        return by_priority
    counts = pd.Series([site[m] for m in by_priority]).value_counts().to_dict()
    seen: dict[str, int] = {}
    keys = {}
    for m in by_priority:
        rank = seen.get(site[m], 0)
        seen[site[m]] = rank + 1
        keys[m] = ((rank + 0.5) / counts[site[m]], priority[m])
    return sorted(by_priority, key=keys.__getitem__)


def _class_buckets(ids: list[str], sizes: SetSizes, seed: int, site: dict[str, str] | None,
                   cls: str) -> list[list[str]]:
    """The ranked members of each fold bucket of one class (after borrowing for short buckets)."""
    folds = sizes.folds
    weight = {(s, f): _hash(seed, s, "fold", f) for s in ids for f in range(folds)}
    priority = {s: _hash(seed, s) for s in ids}
    buckets = [[] for _ in range(folds)]
    for s in ids:
        buckets[max(range(folds), key=lambda f: weight[s, f])].append(s)
    ranked = [_site_interleaved(b, priority, site) for b in buckets]
    # A bucket with fewer members than its sets need borrows, one at a time, the spare member that hashes
    # highest for it: spare means in neither its own bucket's test head nor its validation tail, or, when
    # no bucket has such a member, ranked beyond the max(test, val) its own bucket needs. Rare when a class
    # has comfortably more than folds x max(test, val) subjects; then the stability guarantee is weaker
    # (docs/splits.md).
    for f in range(folds):
        while len(ranked[f]) < sizes.held:
            spare = [(weight[s, f], s, h) for h in range(folds) if h != f
                     for s in ranked[h][sizes.test:len(ranked[h]) - sizes.val]]
            if not spare:
                spare = [(weight[s, f], s, h) for h in range(folds) if h != f for s in ranked[h][sizes.held:]]
            _, s, h = max(spare)
            ranked[h].remove(s)
            ranked[f].append(s)
            log.warning("class %s: fold %d's bucket is short of subjects; borrowed %s from fold %d's", cls, f + 1, s, h + 1)
    return ranked


def make_splits(
    participants: pd.DataFrame,
    classes: Sequence[str],
    *,
    folds: int = 5,
    scheme: str = "balanced",
    val_per_class: int = 6,
    test_per_class: int = 6,
    proportional_val: float = 0.15,
    proportional_test: float = 0.2,
    seed: int = 13,
    task: str | None = None,
) -> pd.DataFrame:
    """Long table, one row per subject and fold: participant_id, label, group, class_index, fold (1-based),
    split (train/val/test), plus ``site`` when the participants have one. Subjects of other groups are left out.
    ``scheme: loso``: ``leave_one_subject_out`` (``folds``, ``test_per_class`` and the proportions do not apply)."""
    if scheme == "loso":
        return leave_one_subject_out(participants, classes, val_per_class=val_per_class, seed=seed, task=task)
    if folds < 2:
        raise ValueError("folds must be at least 2")
    missing = [c for c in ("participant_id", "group") if c not in participants.columns]
    if missing:
        raise InputError(f"the participants table lacks the column(s) {missing}")
    what = f"task {task!r}" if task else f"classes {list(classes)}"
    table = participants.copy()
    table["participant_id"] = table["participant_id"].map(_participant_id)
    if table["participant_id"].duplicated().any():
        dupes = sorted(set(table["participant_id"][table["participant_id"].duplicated()]))
        raise InputError(f"participants appear more than once: {dupes}")
    has_site = "site" in table.columns
    if has_site:
        table["site"] = table["site"].astype("string").fillna("n/a")
    sized = _class_sizes(table, classes, what, lambda n: set_sizes(n, scheme, folds, val_per_class, test_per_class,
                                                                    proportional_val, proportional_test), scheme, folds)
    rows = [row for class_index, cls in enumerate(classes)
            for row in _class_rows(table[table["group"] == cls], class_index, cls, sized[cls], folds, seed, has_site)]
    out = pd.DataFrame(rows, columns=COLUMNS + (["site"] if has_site else []))
    return out.sort_values(["fold", "class_index", "participant_id"], ignore_index=True)


def _class_sizes(table: pd.DataFrame, classes: Sequence[str], what: str, sizer, scheme: str, folds: int) -> dict[str, SetSizes]:
    """Each class's set sizes (``sizer``: class size -> SetSizes); one error listing every class too small to split."""
    problems = []
    sized = {}
    for cls in classes:
        n = int((table["group"] == cls).sum())
        sizes = sizer(n)
        if n == 0:
            problems.append(f"class {cls!r} has no subjects")
        elif n < sizes.needed:
            problems.append(
                f"class {cls!r} has {n} subjects but the {scheme} split needs at least {sizes.needed} "
                f"({folds} folds x {sizes.held} held-out subjects in disjoint test/validation buckets, with "
                f"{sizes.test} test and {sizes.val} validation subjects per fold and at least one left to train)")
        sized[cls] = sizes
    if problems:
        raise InputError(f"{what} cannot be split: " + "; ".join(problems))
    return sized


def _class_rows(members: pd.DataFrame, class_index: int, cls: str, sizes: SetSizes, folds: int, seed: int,
                has_site: bool) -> list[dict]:
    """One row per member of class ``cls`` and fold: test from the fold's bucket, validation from the next one's tail."""
    ids = sorted(members["participant_id"])
    site = dict(zip(members["participant_id"], members["site"])) if has_site else None
    ranked = _class_buckets(ids, sizes, seed, site, cls)
    rows = []
    for f in range(folds):
        test = set(ranked[f][:sizes.test])
        following = ranked[(f + 1) % folds]
        val = set(following[len(following) - sizes.val:])  # none for val 0 (a [-0:] slice would take them all)
        for s in ids:
            split = "test" if s in test else "val" if s in val else "train"
            row = {"participant_id": s, "label": s[4:], "group": cls, "class_index": class_index, "fold": f + 1, "split": split}
            if has_site:
                row["site"] = site[s]
            rows.append(row)
    return rows


def _task_members(participants: pd.DataFrame, classes: Sequence[str], what: str) -> pd.DataFrame:
    """The participants of ``classes`` (participant_id with ``sub-``), checked: columns, duplicates, no empty class."""
    missing = [c for c in ("participant_id", "group") if c not in participants.columns]
    if missing:
        raise InputError(f"the participants table lacks the column(s) {missing}")
    table = participants[participants["group"].isin(classes)].copy()
    table["participant_id"] = table["participant_id"].map(_participant_id)
    if table["participant_id"].duplicated().any():
        raise InputError(f"participants appear more than once: {sorted(set(table['participant_id'][table['participant_id'].duplicated()]))}")
    absent = [c for c in classes if c not in set(table["group"])]
    if absent:
        raise InputError(f"{what} cannot be split: class(es) {absent} have no subjects")
    return table.sort_values("participant_id", ignore_index=True)


def leave_one_subject_out(participants: pd.DataFrame, classes: Sequence[str], *, val_per_class: int = 0,
                          seed: int = 13, task: str | None = None) -> pd.DataFrame:
    """One fold per participant of ``classes`` (folds 1.. in participant_id order): that participant is the
    test set; ``val_per_class`` subjects of every class among the others validate (the ones that hash highest
    on (seed, test subject, candidate)); everyone else trains. Same columns as ``make_splits`` (``site`` kept)."""
    what = f"task {task!r}" if task else f"classes {list(classes)}"
    table = _task_members(participants, classes, what)
    groups = dict(zip(table["participant_id"], table["group"]))
    members = {c: [s for s in table["participant_id"] if groups[s] == c] for c in classes}
    small = {c: len(ids) for c, ids in members.items() if len(ids) < val_per_class + 2}
    if small:
        raise InputError(f"{what} cannot be split leave-one-subject-out with {val_per_class} validation subject(s) per "
                         f"class: class(es) {small} need at least {val_per_class + 2} subjects (one to test, "
                         f"{val_per_class} to validate, one left to train)")
    site = dict(zip(table["participant_id"], table["site"].astype("string").fillna("n/a"))) if "site" in table else None
    rows = []
    for fold, tested in enumerate(table["participant_id"], start=1):
        val = {s for c in classes
               for s in sorted((m for m in members[c] if m != tested), key=lambda m: -_hash(seed, tested, "val", m))[:val_per_class]}
        for class_index, cls in enumerate(classes):
            for s in members[cls]:
                split = "test" if s == tested else "val" if s in val else "train"
                rows.append({"participant_id": s, "label": s[4:], "group": cls, "class_index": class_index,
                             "fold": fold, "split": split, **({"site": site[s]} if site else {})})
    out = pd.DataFrame(rows, columns=COLUMNS + (["site"] if site else []))
    return out.sort_values(["fold", "class_index", "participant_id"], ignore_index=True)


def check_leakage(split: pd.DataFrame) -> None:
    """Raise LeakageError if a subject is in two of train/val/test in one fold, or in two test folds."""
    missing = [c for c in ("participant_id", "fold", "split") if c not in split.columns]
    if missing:
        raise LeakageError(f"the split table lacks the column(s) {missing}; cannot check it for leakage")
    bad_values = sorted(set(split["split"]) - set(SPLITS))
    if bad_values:
        raise LeakageError(f"the split table has split values {bad_values}; allowed are {list(SPLITS)}")
    problems = []
    per_fold = split.groupby(["fold", "participant_id"])["split"].agg(lambda s: sorted(set(s)))
    for (fold, pid), sets in per_fold.items():
        if len(sets) > 1:
            problems.append(f"{pid} is in {' and '.join(sets)} of fold {fold}")
    duplicated = split[split.duplicated(["fold", "participant_id", "split"])]
    for _, row in duplicated.iterrows():
        problems.append(f"{row['participant_id']} is listed twice in {row['split']} of fold {row['fold']}")
    unit = SUBJECT if SUBJECT in split.columns else "participant_id"
    if unit == SUBJECT:  # all images of one subject in one set of each fold: no session leaks across sets
        sets = split.groupby(["fold", SUBJECT])["split"].agg(lambda s: sorted(set(s)))
        for (fold, subject), names in sets.items():
            if len(names) > 1:
                problems.append(f"{subject} has images in {' and '.join(names)} of fold {fold}")
    test_folds = split[split["split"] == "test"].groupby(unit)["fold"].agg(lambda f: sorted(set(f)))
    for pid, test in test_folds.items():
        if len(test) > 1:
            problems.append(f"{pid} is a test subject in folds {test}")
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise LeakageError("subject-level leakage in the split:\n" + "\n".join(f"  - {p}" for p in shown))


def read_split(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype={"participant_id": str, "label": str, "group": str, "split": str,
                                              SUBJECT: str})


def expand_to_images(split: pd.DataFrame, images: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per image of each participant's row: ``images`` maps image keys (``01_ses-02``) to
    participant labels (``01``); a participant without an entry is its own single image. Adds the
    ``subject`` column (the participant) that check_leakage groups by."""
    keys: dict[str, list[str]] = {}
    for key, label in sorted((images or {}).items()):
        keys.setdefault(str(label), []).append(str(key))
    rows = []
    for row in split.to_dict("records"):
        for key in keys.get(row["label"], [row["label"]]):
            rows.append({**row, "participant_id": f"sub-{key}", "label": key, SUBJECT: row["participant_id"]})
    out = pd.DataFrame(rows, columns=list(split.columns) + [SUBJECT])
    return out.sort_values(["fold", "class_index", "participant_id"], ignore_index=True)


def fold_table(split: pd.DataFrame, fold: int) -> pd.DataFrame:
    """The rows of one fold (1-based)."""
    rows = split[split["fold"] == int(fold)]
    if rows.empty:
        raise InputError(f"the split has no fold {fold}; it has folds {sorted(split['fold'].unique())}")
    return rows.reset_index(drop=True)


def split_summary(split: pd.DataFrame) -> pd.DataFrame:
    """Subjects per fold x split x group (for logs and docs)."""
    return split.groupby(["fold", "split", "group"]).size().unstack("group", fill_value=0)


def make_split_file(
    participants_tsv: str | Path,
    out_tsv: str | Path,
    classes: Sequence[str],
    *,
    subjects: Iterable[str] | None = None,
    images: Mapping[str, str] | None = None,
    task: str | None = None,
    pool: Mapping[str, Sequence[str]] | None = None,
    **params,
) -> pd.DataFrame:
    """Read participants.tsv (keeping only ``subjects`` when given, labels with or without ``sub-``), make
    the splits on participants, give each participant's images (``expand_to_images``) its sets, check
    for leakage and write them atomically. ``pool`` maps a class to the groups it holds (config
    ``tasks[].pool``): their subjects are that class, and the split's ``group`` column names the class."""
    path = Path(participants_tsv)
    if not path.exists():
        raise InputError("participants.tsv does not exist", path=path)
    table = pd.read_csv(path, sep="\t", dtype={"participant_id": str, "group": str})
    missing = [c for c in ("participant_id", "group") if c not in table.columns]
    if missing:
        raise InputError(f"lacks the column(s) {missing}; it has {list(table.columns)}", path=path)
    table["participant_id"] = table["participant_id"].map(_participant_id)
    if subjects is not None:
        wanted = {_participant_id(s) for s in subjects}
        unknown = sorted(wanted - set(table["participant_id"]))
        if unknown:
            raise InputError(f"subjects {unknown} are not in participants.tsv", path=path)
        table = table[table["participant_id"].isin(wanted)]
    pooled = {group: cls for cls, groups in (pool or {}).items() for group in groups}
    table = table.assign(group=table["group"].map(lambda g: pooled.get(g, g)))
    columns = ["participant_id", "group"] + (["site"] if "site" in table.columns else [])
    split = expand_to_images(make_splits(table[columns], list(classes), task=task, **params), images)
    check_leakage(split)
    write_tsv(split, out_tsv)
    log.info("split for %s written to %s:\n%s", task or list(classes), out_tsv, split_summary(split).to_string())
    return split
