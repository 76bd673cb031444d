"""BIDS input: participants.tsv, T1w discovery, and the checks that run before any heavy work.

Every problem is reported with the subject and the file it concerns, and all problems found are
reported together so that a user fixes a dataset in one pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from headmri.errors import InputError

LABEL_RE = re.compile(r"^[A-Za-z0-9]+$")
T1W_GLOBS = ("sub-{label}/anat/sub-{label}*_T1w.nii.gz", "sub-{label}/anat/sub-{label}*_T1w.nii",
             "sub-{label}/ses-*/anat/sub-{label}_ses-*_T1w.nii.gz", "sub-{label}/ses-*/anat/sub-{label}_ses-*_T1w.nii")


@dataclass(frozen=True)
class Participant:
    label: str  # BIDS label, without "sub-"
    group: str
    t1w: Path | None  # NIfTI input, or None when the subject comes as DICOM
    dicom_dir: Path | None = None
    extra: Mapping[str, object] = field(default_factory=dict)  # site, age, sex and any other columns
    t1w_files: tuple[Path, ...] = ()  # every T1w NIfTI of the subject (sessions, runs), in name order

    @property
    def participant_id(self) -> str:
        return f"sub-{self.label}"


class InputErrors(InputError):
    """Several input problems at once; the message lists each on its own line."""

    def __init__(self, errors: list[InputError]):
        self.errors = errors
        Exception.__init__(self, f"{len(errors)} problem(s) with the input data:\n" + "\n".join(f"  - {e}" for e in errors))


def _read_table(tsv: Path) -> pd.DataFrame:
    if not tsv.exists():
        raise InputError("participants.tsv does not exist", path=tsv)
    try:
        table = pd.read_csv(tsv, sep="\t", dtype={"participant_id": str, "group": str}, keep_default_na=True)
    except Exception as exc:
        raise InputError(f"cannot be read as a tab-separated table ({exc})", path=tsv) from exc
    missing = [c for c in ("participant_id", "group") if c not in table.columns]
    if missing:
        raise InputError(f"lacks the column(s) {missing}; it has {list(table.columns)}", path=tsv)
    return table


def _row_problems(table: pd.DataFrame, groups: list[str], tsv: Path) -> list[InputError]:
    """A problem per bad participant_id, repeated id and unknown group (each names its subject)."""
    errors: list[InputError] = []
    for row, pid in enumerate(table["participant_id"], start=2):  # line 1 is the header
        pid = "" if pd.isna(pid) else str(pid)
        label = pid[4:] if pid.startswith("sub-") else pid
        if not pid.startswith("sub-") or not LABEL_RE.match(label):
            errors.append(InputError(f"line {row}: participant_id {pid!r} is not 'sub-' followed by letters and digits (BIDS label)", subject=pid or None, path=tsv))
    dupes = table["participant_id"][table["participant_id"].duplicated(keep=False)]
    for pid in sorted(set(dupes.dropna())):
        errors.append(InputError("participant_id appears more than once in participants.tsv", subject=pid, path=tsv))
    for pid, group in zip(table["participant_id"], table["group"]):
        if pd.isna(group) or group not in groups:
            errors.append(InputError(f"group {group!r} is not one of the configured groups {groups}", subject=pid, path=tsv))
    return errors


def _raise_all(errors: list[InputError]) -> None:
    if errors:
        raise errors[0] if len(errors) == 1 else InputErrors(errors)


def read_participants(tsv: str | Path, groups: Iterable[str]) -> pd.DataFrame:
    """Read participants.tsv and check IDs and groups; all other columns are kept as they are."""
    tsv = Path(tsv)
    table = _read_table(tsv)
    _raise_all(_row_problems(table, list(groups), tsv))
    table["label"] = table["participant_id"].str[4:]
    return table


def find_t1w(bids_dir: Path, label: str) -> list[Path]:
    """All T1w NIfTI files of a subject, sorted (sessions and runs in name order)."""
    found: set[Path] = set()
    for pattern in T1W_GLOBS:
        found.update(bids_dir.glob(pattern.format(label=label)))
    return sorted(found)


def _subject_dirs(bids_dir: Path) -> set[str]:
    return {p.name[4:] for p in bids_dir.glob("sub-*") if p.is_dir()}


@dataclass(frozen=True)
class Dataset:
    """What a BIDS dataset holds for the run: its usable participants, the problems that stop the run
    (they concern a selected subject, or every subject when none is selected) and the problems that only
    warn (they concern rows outside config `subjects`)."""

    participants: list[Participant]
    errors: list[InputError]
    warnings: list[InputError]

    def raise_errors(self) -> None:
        _raise_all(self.errors)


def _unmatched(bids_dir: Path, dicom_root: Path | None, listed: set[str]) -> list[InputError]:
    """Images and DICOM folders of subjects that have no row in participants.tsv."""
    errors = []
    for label in sorted(_subject_dirs(bids_dir) - listed):
        images = find_t1w(bids_dir, label)
        if images:
            errors.append(InputError("has a T1w image but no row in participants.tsv", subject=f"sub-{label}", path=images[0]))
    if dicom_root is not None and dicom_root.is_dir():
        for folder in sorted(dicom_root.glob("sub-*")):
            if folder.is_dir() and folder.name[4:] not in listed:
                errors.append(InputError("has a DICOM folder but no row in participants.tsv", subject=folder.name, path=folder))
    return errors


def _participant(row, bids_dir: Path, dicom_root: Path | None, extra_columns: list[str], tsv: Path):
    """The Participant of one row, or the InputError of a row without an image."""
    label = row["label"]
    images = find_t1w(bids_dir, label)
    dicom = dicom_root / f"sub-{label}" if dicom_root is not None and (dicom_root / f"sub-{label}").is_dir() else None
    if not images and dicom is None:
        return InputError(
            f"has a row in participants.tsv but no T1w image (looked for {bids_dir}/sub-{label}/[ses-*/]anat/*_T1w.nii[.gz]"
            + (f" and {dicom_root}/sub-{label}/" if dicom_root else "") + ")",
            subject=f"sub-{label}", path=tsv)
    extra = {c: (None if pd.isna(row[c]) else row[c]) for c in extra_columns}
    return Participant(label=label, group=row["group"], t1w=images[0] if images else None,
                       dicom_dir=None if images else dicom, extra=extra, t1w_files=tuple(images))


def scan_dataset(
    bids_dir: str | Path,
    participants_tsv: str | Path | None,
    groups: Iterable[str],
    dicom_dir: str | Path | None = None,
    subjects: Iterable[str] = (),
) -> Dataset:
    """Match participants.tsv rows with T1w images (or DICOM folders), optionally keeping a subset.

    Every problem is collected: a bad or repeated ID, an unknown group, a row with no image, an image
    with no row, a requested subject that is not in the table. With ``subjects`` given, a problem of
    another row is a warning and that row is left out; otherwise every problem is an error.
    """
    bids_dir = Path(bids_dir)
    if not bids_dir.is_dir():
        raise InputError("the BIDS directory does not exist", path=bids_dir)
    tsv = Path(participants_tsv) if participants_tsv else bids_dir / "participants.tsv"
    table = _read_table(tsv)
    wanted = {s[4:] if s.startswith("sub-") else s for s in subjects}
    problems = _row_problems(table, list(groups), tsv)
    bad_rows = {p.subject for p in problems}
    table = table[table["participant_id"].notna()].copy()
    table["label"] = table["participant_id"].str[4:]
    dicom_root = Path(dicom_dir) if dicom_dir else None
    listed = set(table["label"])
    problems += _unmatched(bids_dir, dicom_root, listed)
    errors = [InputError("was requested (config `subjects`) but is not in participants.tsv", subject=f"sub-{label}", path=tsv)
              for label in sorted(wanted - listed)]
    extra_columns = [c for c in table.columns if c not in ("participant_id", "group", "label")]
    participants = []
    for _, row in table.iterrows():
        if row["participant_id"] in bad_rows:
            continue
        found = _participant(row, bids_dir, dicom_root, extra_columns, tsv)
        if isinstance(found, InputError):
            problems.append(found)
        elif not wanted or found.label in wanted:
            participants.append(found)

    def selected(problem: InputError) -> bool:
        return not wanted or (problem.subject or "")[4:] in wanted

    errors += [p for p in problems if selected(p)]
    return Dataset(participants, errors, [p for p in problems if not selected(p)])


def load_participants(
    bids_dir: str | Path,
    participants_tsv: str | Path | None,
    groups: Iterable[str],
    dicom_dir: str | Path | None = None,
    subjects: Iterable[str] = (),
) -> list[Participant]:
    """``scan_dataset``'s participants; raises InputError (all problems together) when it found errors."""
    dataset = scan_dataset(bids_dir, participants_tsv, groups, dicom_dir, subjects)
    dataset.raise_errors()
    return dataset.participants


def check_group_sizes(participants: Iterable[Participant], classes: Iterable[str], needed: int, task: str) -> None:
    """Raise if a class of a task has fewer subjects than the requested folds and held-out sets need."""
    counts = pd.Series([p.group for p in participants]).value_counts()
    short = {c: int(counts.get(c, 0)) for c in classes if counts.get(c, 0) < needed}
    if short:
        raise InputError(f"task {task!r} needs at least {needed} subjects per class for the requested folds and "
                         f"validation/test sizes, but has {short}")
