"""Where each participant's BOLD run is: fMRIPrep-style derivatives found by glob patterns, (the synthetic
cohort's are planned by headmri.demo.bold.planned_runs). Plans only: nothing is read but file names (the workflow calls it
when it plans jobs); ``headmri.inputs.check_bold`` reads the headers.

Among several runs that match a participant's pattern (spaces, sessions, runs), the one in the declared
space is taken, then the first in name order; the choice is recorded in results/qc/inputs.tsv. The
brain mask is the BOLD's name with ``desc-preproc_bold.nii.gz`` replaced (fMRIPrep names them so), the
sidecar the BOLD's name with ``.json``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from headmri.bids import InputErrors, read_participants
from headmri.errors import InputError
from headmri.fmri.bold import BoldFiles

BOLD_SUFFIX = "desc-preproc_bold.nii.gz"


@dataclass(frozen=True)
class BoldPatterns:
    """Glob patterns under ``root`` (``{subject}`` = participant label) and the declared space."""

    root: Path
    bold: str
    mask: str
    confounds: str
    space: str


@dataclass(frozen=True)
class PlannedRun:
    """A participant's run: its files as strings (Snakemake inputs) and how it was chosen."""

    label: str
    bold: str
    mask: str
    confounds: str | None
    sidecar: str
    choice: str = "only file"

    def files(self, space: str | None) -> BoldFiles:
        return BoldFiles(subject=f"sub-{self.label}", bold=Path(self.bold), mask=Path(self.mask),
                         confounds=Path(self.confounds) if self.confounds else None, sidecar=Path(self.sidecar),
                         space=space)


def _space(path: Path) -> str | None:
    found = re.search(r"_space-([A-Za-z0-9]+)", path.name)
    return found.group(1) if found else None


def _choose(found: list[Path], space: str) -> tuple[Path, str]:
    if len(found) == 1:
        return found[0], "only file"
    in_space = [f for f in found if _space(f) == space] or found
    why = f"in space {space}, " if len(in_space) < len(found) else ""
    return in_space[0], f"first {why}of {len(found)} runs in name order"


def companion(bold: Path, suffix: str) -> Path:
    """A file named like the BOLD with its ``desc-preproc_bold.nii.gz`` ending replaced by ``suffix``."""
    name = bold.name
    stem = name[: -len(BOLD_SUFFIX)] if name.endswith(BOLD_SUFFIX) else re.sub(r"\.nii(\.gz)?$", "_", name)
    return bold.with_name(stem + suffix)


def run_prefix(bold: Path) -> str:
    """The entities a run's other derivatives share (``sub-01_ses-1_task-rest_run-2_``): the BOLD's name
    without its space, resolution and ``desc-preproc_bold`` ending (fMRIPrep's confounds carry no space)."""
    return re.sub(r"_(space|res|cohort)-[A-Za-z0-9]+", "", companion(bold, "").name)


def matching_confounds(bold: Path, found: list[Path], label: str) -> Path | None:
    """The confounds table of the chosen run: the one whose name starts with the run's entities; a single
    table is taken as it is; several and none of the run: an InputError naming them."""
    prefix = run_prefix(bold)
    of_run = [f for f in found if f.name.startswith(prefix)]
    if of_run:
        return of_run[0]
    if len(found) <= 1:
        return found[0] if found else None
    raise InputError(f"none of the confounds tables {[f.name for f in found]} is named like the chosen run {bold.name}",
                     subject=f"sub-{label}", path=bold)


def find_run(patterns: BoldPatterns, label: str) -> PlannedRun:
    """The run of one participant; an InputError naming the participant and the pattern when none matches."""
    found = sorted(patterns.root.glob(patterns.bold.format(subject=label)))
    if not found:
        raise InputError(f"has no BOLD run: nothing matches {patterns.root}/{patterns.bold.format(subject=label)}",
                         subject=f"sub-{label}", path=patterns.root)
    bold, choice = _choose(found, patterns.space)
    confounds = matching_confounds(bold, sorted(patterns.root.glob(patterns.confounds.format(subject=label))), label)
    sidecar = re.sub(r"\.nii(\.gz)?$", ".json", str(bold))
    return PlannedRun(label, str(bold), str(companion(bold, patterns.mask)),
                      str(confounds) if confounds else None, sidecar, choice)


def plan_runs(patterns: BoldPatterns, labels: Iterable[str]) -> dict[str, PlannedRun]:
    """Every participant's run; raises one InputError listing every participant without one."""
    if not patterns.root.is_dir():
        raise InputError("the fMRI derivatives folder (fmri.derivatives_dir) does not exist", path=patterns.root)
    runs, problems = {}, []
    for label in labels:
        try:
            runs[label] = find_run(patterns, label)
        except InputError as exc:
            problems.append(exc)
    if problems:
        raise problems[0] if len(problems) == 1 else InputErrors(problems)
    return runs


def participant_groups(participants_tsv: str | Path, groups: Iterable[str], subjects: Iterable[str] = ()) -> dict[str, str]:
    """label -> group of participants.tsv's rows (all checked: IDs, groups), or of ``subjects`` only."""
    table = read_participants(participants_tsv, groups)
    wanted = {s[4:] if s.startswith("sub-") else s for s in subjects}
    unknown = sorted(wanted - set(table["label"]))
    if unknown:
        raise InputError(f"subjects {unknown} (config `subjects`) are not in participants.tsv", path=participants_tsv)
    return {label: group for label, group in zip(table["label"], table["group"]) if not wanted or label in wanted}
