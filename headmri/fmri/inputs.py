"""Where each participant's BOLD runs are: fMRIPrep-style derivatives found by glob patterns (the synthetic
cohort's are planned by headmri.demo.bold.planned_runs). Plans only: nothing is read but file names (the
workflow calls it when it plans jobs); ``headmri.inputs.check_bold`` reads the headers.

As in the T1w branch (``headmri.inputs.select_images``), a participant's runs are grouped by session and
each session is its own image, keyed ``<label>_ses-<session>`` (``<label>`` without sessions). Among a
session's files those in the declared space are preferred, then ``runs`` chooses: ``first`` or ``last`` in
name order, or ``all`` (each run its own image, keyed with its entities but space, res, cohort and desc:
``01_ses-1_task-rest_run-2``). The choice is recorded in results/qc/inputs.tsv. Beside structural sources
(``sessions=False``) a participant has one image, keyed by its label: sessions are not told apart.

The brain mask is the BOLD's name with ``desc-preproc_bold.nii.gz`` replaced (fMRIPrep names them so), the
sidecar the BOLD's name with ``.json``, the confounds table the one named with the run's entities.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from headmri.bids import InputErrors, read_participants
from headmri.errors import InputError
from headmri.fmri.bold import BoldFiles
from headmri.inputs import choose_files

BOLD_SUFFIX = "desc-preproc_bold.nii.gz"
RUN_CHOICES = ("first", "last", "all")
# entities that name a derivative of a run, not the run: left out of image keys and confounds matching
DERIVATIVE_ENTITIES = ("space", "res", "cohort", "desc")
_ENTITY = re.compile(r"_([a-z]+)-([A-Za-z0-9]+)")


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
    """One image of the fMRI branch: its participant, its run's files as strings (Snakemake inputs), how it
    was chosen, and its image key (``01``, ``01_ses-2``, ``01_ses-2_task-rest_run-2``; empty: the label)."""

    label: str
    bold: str
    mask: str
    confounds: str | None
    sidecar: str
    choice: str = "only file"
    key: str = ""
    others: tuple[str, ...] = ()  # the session's BOLD runs that were not chosen (rows `not used` of inputs.tsv)

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", self.label)

    @property
    def session(self) -> str | None:
        return run_entities(self.bold).get("ses")

    def files(self, space: str | None) -> BoldFiles:
        return BoldFiles(subject=f"sub-{self.key}", bold=Path(self.bold), mask=Path(self.mask),
                         confounds=Path(self.confounds) if self.confounds else None, sidecar=Path(self.sidecar),
                         space=space)


def run_entities(path: str | Path) -> dict[str, str]:
    """The entities of a run's file name that say which run it is, in name order, ``sub`` and the
    derivative ones (space, res, cohort, desc) left out: {"ses": "1", "task": "rest", "run": "2"}."""
    return {k: v for k, v in _ENTITY.findall(Path(path).name) if k not in DERIVATIVE_ENTITIES}


def _space(path: Path) -> str | None:
    found = re.search(r"_space-([A-Za-z0-9]+)", path.name)
    return found.group(1) if found else None


def _choose(group: list[Path], space: str, runs: str) -> tuple[list[Path], str]:
    """The runs of one session to use: those in ``space`` preferred, then ``runs`` as the T1w branch chooses
    (``headmri.inputs.choose_files``), and the choice as recorded."""
    if runs not in RUN_CHOICES:
        raise ValueError(f"fmri.runs must be one of {RUN_CHOICES}, got {runs!r}")
    in_space = [f for f in group if _space(f) == space] or group
    chosen, choice = choose_files(in_space, runs)
    if len(in_space) < len(group):
        choice = f"in space {space} ({len(in_space)} of {len(group)} runs): {choice}"
    return chosen, choice


def companion(bold: Path, suffix: str) -> Path:
    """A file named like the BOLD with its ``desc-preproc_bold.nii.gz`` ending replaced by ``suffix``."""
    name = bold.name
    stem = name[: -len(BOLD_SUFFIX)] if name.endswith(BOLD_SUFFIX) else re.sub(r"\.nii(\.gz)?$", "_", name)
    return bold.with_name(stem + suffix)


def run_prefix(bold: Path) -> str:
    """The entities a run's other derivatives share (``sub-01_ses-1_task-rest_run-2_``): the BOLD's name
    without its space, resolution and ``desc-preproc_bold`` ending (fMRIPrep's confounds carry no space)."""
    return re.sub(r"_(space|res|cohort)-[A-Za-z0-9]+", "", companion(bold, "").name)


def _agrees(table: Path, run: dict[str, str]) -> bool:
    """No entity of the table's name names another run (another session, task, run...) than ``run``'s."""
    return all(run.get(k, v) == v for k, v in run_entities(table).items())


def matching_confounds(bold: Path, found: list[Path], key: str) -> Path | None:
    """The confounds table of one run among its participant's ``found``: the one whose name starts with the
    run's entities, else the only one no entity of which names another run; none when every table is
    another session's. Tables of the run's session none of which is its: an InputError naming them."""
    prefix = run_prefix(bold)
    of_run = [f for f in found if f.name.startswith(prefix)]
    if of_run:
        return of_run[0]
    run = run_entities(bold)
    fitting = [f for f in found if _agrees(f, run)]
    if len(fitting) == 1:
        return fitting[0]
    same_session = [f for f in found if run_entities(f).get("ses") == run.get("ses")]
    if not fitting and not same_session:
        return None
    raise InputError(f"none of the confounds tables {[f.name for f in fitting or same_session]} is named like the "
                     f"chosen run {bold.name}", subject=f"sub-{key}", path=bold)


def _image_key(label: str, session: str | None, bold: Path, several: bool) -> str:
    """``01`` / ``01_ses-2``; with several runs kept in the session, all the run's entities."""
    if several:
        return label + "".join(f"_{k}-{v}" for k, v in run_entities(bold).items())
    return label + (f"_ses-{session}" if session else "")


def _planned(patterns: BoldPatterns, label: str, key: str, bold: Path, tables: list[Path], choice: str,
             others: tuple[str, ...] = ()) -> PlannedRun:
    confounds = matching_confounds(bold, tables, key)
    sidecar = re.sub(r"\.nii(\.gz)?$", ".json", str(bold))
    return PlannedRun(label, str(bold), str(companion(bold, patterns.mask)), str(confounds) if confounds else None,
                      sidecar, choice, key, others)


def find_runs(patterns: BoldPatterns, label: str, runs: str = "first", sessions: bool = True) -> list[PlannedRun]:
    """The images of one participant: one per session (per run with ``runs: all``), in name order; with
    ``sessions`` False one image of all its files (keyed by the label). An InputError naming the participant
    and the pattern when nothing matches, or naming a file two images would share a key with."""
    found = sorted(patterns.root.glob(patterns.bold.format(subject=label)))
    if not found:
        raise InputError(f"has no BOLD run: nothing matches {patterns.root}/{patterns.bold.format(subject=label)}",
                         subject=f"sub-{label}", path=patterns.root)
    tables = sorted(patterns.root.glob(patterns.confounds.format(subject=label)))
    by_session: dict[str | None, list[Path]] = {}
    for bold in found:
        by_session.setdefault(run_entities(bold).get("ses") if sessions else None, []).append(bold)
    planned: list[PlannedRun] = []
    for session, group in by_session.items():
        chosen, choice = _choose(group, patterns.space, runs)
        if not sessions and len({run_entities(f).get("ses") for f in group}) > 1:
            choice += "; sessions not told apart beside structural sources"
        others = tuple(str(f) for f in group if f not in chosen)
        for index, bold in enumerate(chosen):
            key = _image_key(label, session, bold, len(chosen) > 1)
            if any(p.key == key for p in planned):
                raise InputError(f"two BOLD runs would both be image sub-{key}; narrow fmri.bold to keep one",
                                 subject=f"sub-{key}", path=bold)
            planned.append(_planned(patterns, label, key, bold, tables, choice, others if index == 0 else ()))
    return planned


def plan_runs(patterns: BoldPatterns, labels: Iterable[str], runs: str = "first",
              sessions: bool = True) -> dict[str, PlannedRun]:
    """Image key -> its run, for every participant (``find_runs``); raises one InputError listing every
    participant without a run (and every other planning problem)."""
    if not patterns.root.is_dir():
        raise InputError("the fMRI derivatives folder (fmri.derivatives_dir) does not exist", path=patterns.root)
    planned, problems = {}, []
    for label in labels:
        try:
            planned.update((run.key, run) for run in find_runs(patterns, label, runs, sessions))
        except InputError as exc:
            problems.append(exc)
    if problems:
        raise problems[0] if len(problems) == 1 else InputErrors(problems)
    return planned


def participant_groups(participants_tsv: str | Path, groups: Iterable[str], subjects: Iterable[str] = ()) -> dict[str, str]:
    """label -> group of participants.tsv's rows (all checked: IDs, groups), or of ``subjects`` only."""
    table = read_participants(participants_tsv, groups)
    wanted = {s[4:] if s.startswith("sub-") else s for s in subjects}
    unknown = sorted(wanted - set(table["label"]))
    if unknown:
        raise InputError(f"subjects {unknown} (config `subjects`) are not in participants.tsv", path=participants_tsv)
    return {label: group for label, group in zip(table["label"], table["group"]) if not wanted or label in wanted}
