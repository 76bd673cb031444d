"""The images a run processes, and the cheap check of each before any heavy work.

A subject's T1w files are grouped by session; each session is its own processed image, named
``sub-<label>_ses-<session>`` in every output (BIDS derivatives style; ``sub-<label>`` alone for a subject
without sessions). Among several files of one session (runs, or acquisitions) config ``runs`` chooses:
``first`` or ``last`` in name order, ``best`` by a signal-to-noise estimate (``snr_estimate``), or ``all``,
each file then its own image named with all its entities (``sub-01_ses-02_run-2``).

``check_image`` reads one image's header and voxels (``headmri.t1w.load_t1w``: truncated or unreadable
file, NaN or infinite voxels, all zeros or constant, not 3D, voxel size, field of view) and returns a row
of ``results/qc/inputs.tsv``: subject, session, run, file, image, status, problem, choice, snr, modality.
``check_bold`` does the same for the fMRI branch's BOLD runs (headers only).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from headmri.errors import InputError
from headmri.fmri.bold import BoldFiles, check_header
from headmri.t1w import check_header as check_t1w_header
from headmri.t1w import load_t1w

log = logging.getLogger(__name__)

RUN_CHOICES = ("first", "last", "best", "all")
COLUMNS = ["subject", "session", "run", "file", "image", "status", "problem", "choice", "snr", "modality"]
NA = "n/a"
_ENTITY = re.compile(r"_([a-zA-Z]+)-([a-zA-Z0-9]+)")
_NAME = re.compile(r"^sub-(?P<label>[a-zA-Z0-9]+)(?P<entities>(?:_[a-zA-Z]+-[a-zA-Z0-9]+)*)_T1w\.nii(?:\.gz)?$")
# The image key (the `subject` wildcard of every per-image rule): a label, then optional BIDS entities.
IMAGE_KEY_PATTERN = r"[A-Za-z0-9]+(_[a-z]+-[A-Za-z0-9]+)*"


@dataclass(frozen=True)
class Image:
    """One processed image: its key (``01``, ``01_ses-02``, ``01_ses-02_run-2``), its participant label,
    its session, the file it comes from, the other files of its session, and how it was chosen."""

    key: str
    label: str
    session: str | None
    file: Path
    others: tuple[Path, ...] = ()  # the session's files that were not used
    choice: str = "only file"

    @property
    def name(self) -> str:  # the prefix of every output name
        return f"sub-{self.key}"


def entities(path: str | Path) -> dict[str, str]:
    """BIDS entities of a T1w file name, ``sub`` excepted: {"ses": "02", "run": "2"}."""
    match = _NAME.match(Path(path).name)
    if not match:
        raise InputError("is not named sub-<label>[_<key>-<value>...]_T1w.nii[.gz] (BIDS)", path=path)
    return dict(_ENTITY.findall(match.group("entities")))


def snr_estimate(path: str | Path, subject: str | None = None) -> float:
    """A cheap signal-to-noise estimate for choosing among runs: the median of the voxels above the image
    mean (the head), over the standard deviation of the voxels below a tenth of that median (the air
    around it); infinite when the air is perfectly flat. Raises InputError for an image that fails the
    checks."""
    data = np.asarray(load_t1w(path, subject=subject).dataobj, dtype=np.float32)
    signal = float(np.median(data[data > data.mean()]))
    air = data[data < 0.1 * signal]
    noise = float(air.std()) if air.size > 1 else 0.0
    return float("inf") if noise == 0 else signal / noise


def choose_files(files: list[Path], runs: str, measure: Callable[[Path], float] | None = None) -> tuple[list[Path], str]:
    """The files of one session to use by ``runs`` (first, last, all; best by ``measure``), and the choice as
    recorded in inputs.tsv; the fMRI branch chooses its BOLD runs with it too (headmri.fmri.inputs)."""
    if len(files) == 1:
        return files, "only file"
    n = len(files)
    if runs == "first":
        return [files[0]], f"first of {n} (runs: first)"
    if runs == "last":
        return [files[-1]], f"last of {n} (runs: last)"
    if runs == "all":
        return files, f"one of {n}, all kept (runs: all)"
    if runs == "best":
        scores = {}
        for f in files:
            try:
                scores[f] = measure(f)
            except InputError as exc:  # a broken run is never the best; its own check reports it
                log.warning("%s", exc)
                scores[f] = float("-inf")
        best = max(files, key=lambda f: (scores[f], -files.index(f)))
        return [best], f"best of {n} by SNR {scores[best]:.1f} (runs: best)"
    raise ValueError(f"runs must be one of {RUN_CHOICES}, got {runs!r}")


def select_images(label: str, files: Sequence[Path], runs: str,
                  measure: Callable[[Path], float] | None = None) -> list[Image]:
    """The images of one subject: one per session (or per file with runs: all), in name order."""
    measure = measure or (lambda f: snr_estimate(f, subject=f"sub-{label}"))
    by_session: dict[str | None, list[Path]] = {}
    for f in sorted(files):
        by_session.setdefault(entities(f).get("ses"), []).append(Path(f))
    images = []
    for session, group in by_session.items():
        chosen, choice = choose_files(group, runs, measure)
        for f in chosen:
            if runs == "all" and len(group) > 1:
                key = label + "".join(f"_{k}-{v}" for k, v in entities(f).items())
            else:
                key = label + (f"_ses-{session}" if session else "")
            others = tuple(g for g in group if g not in chosen)
            images.append(Image(key=key, label=label, session=session, file=f, others=others, choice=choice))
    keys = [image.key for image in images]
    for image in images:
        if keys.count(image.key) > 1:  # e.g. sub-01_T1w.nii beside sub-01_T1w.nii.gz
            raise InputError(f"two T1w files would both be image sub-{image.key}; keep one",
                             subject=f"sub-{label}", path=image.file)
    return images


def plan_images(participants: Iterable, runs: str, converted: Callable[[str], Path]) -> dict[str, Image]:
    """Image key -> Image for every participant (``headmri.bids.Participant``): its sessions and chosen
    runs, or, for a subject that comes as DICOM, the single image ``converted(label)``."""
    images: dict[str, Image] = {}
    for p in participants:
        if p.t1w_files:
            images.update((image.key, image) for image in select_images(p.label, p.t1w_files, runs))
        else:
            images[p.label] = Image(key=p.label, label=p.label, session=None, file=Path(converted(p.label)))
    return images


def header_problems(images: Iterable[Image]) -> list[InputError]:
    """The header problems of images whose files exist (cheap: no voxels are read)."""
    problems = []
    for image in images:
        if image.file.exists():
            try:
                check_t1w_header(image.file, subject=image.name)
            except InputError as exc:
                problems.append(exc)
    return problems


def _row(image_key: str, label: str, file: str | Path, **values) -> dict:
    ents = entities(file) if _NAME.match(Path(file).name) else {}
    row = {"subject": f"sub-{label}", "session": f"ses-{ents['ses']}" if "ses" in ents else NA,
           "run": f"run-{ents['run']}" if "run" in ents else NA, "file": str(file), "image": f"sub-{image_key}",
           "status": "ok", "problem": NA, "choice": "only file", "snr": NA, "modality": "T1w"}
    row.update(values)
    return row


def check_image(path: str | Path, image_key: str, label: str, choice: str = "only file") -> dict:
    """Read one image's header and voxels; its row of inputs.tsv (status ``ok`` or ``failed`` with the
    problem). Never raises for bad input: the row records it."""
    try:
        snr = snr_estimate(path, subject=f"sub-{image_key}")
    except InputError as exc:
        return _row(image_key, label, path, status="failed", problem=exc.reason, choice=choice)
    return _row(image_key, label, path, choice=choice, snr=f"{snr:.2f}")


def _session_run(file: str | Path) -> dict[str, str]:
    """The session and run columns of a row, from any BIDS-style file name (a BOLD run's too)."""
    ents = dict(_ENTITY.findall(Path(file).name))
    return {"session": f"ses-{ents['ses']}" if "ses" in ents else NA, "run": f"run-{ents['run']}" if "run" in ents else NA}


def check_bold(files: BoldFiles, image_key: str, drop_volumes: int = 0, choice: str = "only file",
               confounds: tuple[str, ...] = ()) -> dict:
    """The fMRI branch's check of one BOLD image (a participant's session or run), headers only
    (``headmri.fmri.bold.check_header``: not 4-D, mask on another grid, no or implausible TR, too few volumes
    for the band at that TR after ``drop_volumes``, another space than the declared one, a confounds table
    without the ``confounds`` columns or with another number of rows than volumes); its row of inputs.tsv
    (modality ``bold``, session and run of the BOLD, the file the problem concerns). Never raises for bad
    input: the row records it."""
    label = image_key.split("_")[0]
    where = _session_run(files.bold)
    try:
        tr = check_header(files, drop_volumes=drop_volumes, confounds=confounds)
    except InputError as exc:
        return _row(image_key, label, exc.path or files.bold, status="failed", problem=exc.reason, choice=choice,
                    modality="bold", **where)
    return _row(image_key, label, files.bold, choice=f"{choice}; TR {tr:g} s", modality="bold", **where)


def unused_rows(images: Iterable, modality: str = "T1w") -> list[dict]:
    """Rows of inputs.tsv for the files that no image uses (other runs of a session): of the T1w images
    (``Image``), or with ``modality="bold"`` of the fMRI branch's runs (``headmri.fmri.inputs.PlannedRun``:
    the same ``key``, ``label``, ``others`` and ``choice``)."""
    return [_row(image.key, image.label, f, status="not used", image=NA, choice=f"not chosen: {image.choice}",
                 modality=modality, **_session_run(f))
            for image in images for f in image.others]


def input_table(rows: Iterable[Mapping]) -> pd.DataFrame:
    table = pd.DataFrame(list(rows), columns=COLUMNS)
    return table.sort_values(["subject", "session", "run", "file"], ignore_index=True)


def accept(row: Mapping) -> None:
    """Raise the InputError a failed row records (naming subject, file and problem); pass an ok row."""
    if row["status"] != "ok":
        raise InputError(str(row["problem"]), subject=str(row["image"]), path=str(row["file"]))
