"""A synthetic resting-state BOLD cohort (3 mm MNI, TR 2 s) with planted group differences.

Every voxel of nilearn's MNI152 brain mask gets

    1000 + A_v * (c_r * g(t) + u_r(t) + 0.5 * e_v(t)) + n_v(t) + 0.5 * (csf(t) + wm(t))

with g the subject's network signal, u_r the own signal of the voxel's AAL region r (absent outside AAL),
e_v a voxel's own slow signal (all three band-limited to 0.01-0.08 Hz, unit sd), n_v white noise (sd 1)
and csf / wm two nuisance series written to the confounds TSV (regressing them removes them). Two kinds
of planted effect, per group and AAL region (``BoldEffect``):

- ``amplitude``: A_v = 1 + strength in the region (else 1): more low-frequency power, higher ALFF there
- ``connectivity``: c_r = coupling + strength in the region (else ``coupling``): the region follows the
  network signal more, so it correlates more with every other region (higher RFCS)

A subject is a function of (seed, label) and its group's effects only: its draws come from
headmri.demo.cohort.subject_rng, and labels are per group (``hc001``, headmri.demo.subject_label).

Written in fMRIPrep's layout under ``derivatives/fmriprep/sub-<label>/func/``: the preprocessed BOLD
(int16 with a scale factor), its brain mask, its sidecar JSON (RepetitionTime) and its confounds TSV;
and at the top ``participants.tsv`` and ``ground_truth.tsv`` (group, region, aal_id, kind, strength).

    python -m headmri.demo.bold OUT --sizes HC=10 MWoA=10 MWA=10 [--seed 0] [--volumes 170] [--effects TSV]
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from headmri.atomic import save_nifti, write_json, write_tsv
from headmri.demo import demo_participants
from headmri.demo.cohort import label_key, subject_rng
from headmri.errors import ConfigError
from headmri.fmri.alff import LOW_FREQUENCY
from headmri.fmri.atlas import aal116, mni_brain_mask, on_grid
from headmri.fmri.bold import MNI_3MM, Grid
from headmri.fmri.inputs import PlannedRun

log = logging.getLogger(__name__)

SPACE = "MNI152NLin6Asym"
KINDS = ("amplitude", "connectivity")
CONFOUNDS = ("csf", "white_matter", "trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")


@dataclass(frozen=True)
class BoldEffect:
    group: str
    region: str  # an AAL name, e.g. Precuneus_L
    kind: str  # amplitude | connectivity
    strength: float

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"a BOLD effect's kind is one of {KINDS}, got {self.kind!r}")
        if self.region not in aal116().names:
            raise ConfigError(f"{self.region!r} is not an AAL region name (e.g. Precuneus_L, Cuneus_R)")
        if not 0 < self.strength <= 3:
            raise ConfigError(f"a BOLD effect's strength must be in (0, 3], got {self.strength}")


# The paper's most discriminative regions (precuneus, cuneus; frontal gyrus for MWA against MWoA).
DEFAULT_EFFECTS = (
    BoldEffect("MWoA", "Precuneus_L", "connectivity", 1.0),
    BoldEffect("MWoA", "Precuneus_R", "connectivity", 1.0),
    BoldEffect("MWoA", "Cuneus_L", "amplitude", 0.5),
    BoldEffect("MWA", "Precuneus_L", "connectivity", 1.0),
    BoldEffect("MWA", "Precuneus_R", "connectivity", 1.0),
    BoldEffect("MWA", "Frontal_Mid_L", "amplitude", 0.5),
)


EFFECT_COLUMNS = ("group", "region", "kind", "strength")


def read_bold_effects(path: str | Path | None) -> tuple[BoldEffect, ...]:
    """The planted effects of a TSV (group, region: an AAL name, kind: amplitude | connectivity, strength);
    None: ``DEFAULT_EFFECTS``. A bad table is a ConfigError naming the file and the row."""
    if path is None:
        return DEFAULT_EFFECTS
    try:
        table = pd.read_csv(path, sep="\t", dtype={"group": str, "region": str, "kind": str})
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read the BOLD effects table {path}: {error}") from error
    missing = [c for c in EFFECT_COLUMNS if c not in table.columns]
    if missing or table.empty:
        raise ConfigError(f"the BOLD effects table {path} needs rows with columns {list(EFFECT_COLUMNS)}"
                          + (f"; missing {missing}" if missing else ""))
    effects = []
    for row, values in enumerate(table[list(EFFECT_COLUMNS)].itertuples(index=False), start=2):
        try:
            effects.append(BoldEffect(values.group, values.region, values.kind, float(values.strength)))
        except (ConfigError, ValueError) as error:
            raise ConfigError(f"{path}, line {row}: {error}") from error
    return tuple(effects)


@dataclass(frozen=True)
class BoldDemoSettings:
    seed: int = 0
    volumes: int = 170
    tr: float = 2.0
    coupling: float = 0.3
    grid: Grid = MNI_3MM


@dataclass(frozen=True)
class Anatomy:
    """The grid's brain mask and AAL labels (0 outside AAL or the mask)."""

    mask: np.ndarray
    labels: np.ndarray
    affine: np.ndarray


@lru_cache(maxsize=2)
def _anatomy(shape: tuple[int, int, int], affine_bytes: bytes) -> Anatomy:
    affine = np.frombuffer(affine_bytes).reshape(4, 4)
    mask = np.asarray(mni_brain_mask(shape, affine).dataobj) > 0
    reference = nib.Nifti1Image(np.zeros(shape, np.float32), affine)
    labels = on_grid(aal116(), reference).labels() * mask
    return Anatomy(mask=mask, labels=labels, affine=affine)


def anatomy(grid: Grid) -> Anatomy:
    return _anatomy(tuple(grid.shape), np.asarray(grid.affine, dtype=np.float64).tobytes())


def slow_series(rng: np.random.Generator, count: int, volumes: int, tr: float) -> np.ndarray:
    """``count`` series of unit sd band-limited to 0.01-0.08 Hz (white noise with the rest of the spectrum cut)."""
    freqs = np.fft.rfftfreq(volumes, tr)
    keep = (freqs >= LOW_FREQUENCY.low) & (freqs <= LOW_FREQUENCY.high)
    spectrum = np.fft.rfft(rng.standard_normal((count, volumes)), axis=1) * keep
    series = np.fft.irfft(spectrum, n=volumes, axis=1)
    return (series / series.std(axis=1, keepdims=True)).astype(np.float32)


def _region_factors(group: str, effects: Sequence[BoldEffect], coupling: float) -> tuple[np.ndarray, np.ndarray]:
    """(amplitude A, coupling c) per AAL id (index 0: outside AAL) for a subject of ``group``."""
    atlas = aal116()
    size = max(atlas.ids) + 1
    amplitude, couple = np.ones(size, np.float32), np.full(size, coupling, np.float32)
    couple[0] = 0.0
    for effect in effects:
        if effect.group == group:
            region = atlas.ids[atlas.names.index(effect.region)]
            if effect.kind == "amplitude":
                amplitude[region] = 1.0 + effect.strength
            else:
                couple[region] = coupling + effect.strength
    return amplitude, couple


def synthesize_bold(label: str, group: str, effects: Sequence[BoldEffect], settings: BoldDemoSettings) -> tuple[np.ndarray, pd.DataFrame]:
    """(4-D float32 run on ``settings.grid``, confounds table) of one subject."""
    rng = subject_rng(settings.seed, label)
    anat = anatomy(settings.grid)
    n, tr = settings.volumes, settings.tr
    inside = anat.labels[anat.mask]
    network = slow_series(rng, 1, n, tr)[0]
    regions = slow_series(rng, int(max(aal116().ids)) + 1, n, tr)
    regions[0] = 0.0
    nuisance = slow_series(rng, 2, n, tr)
    amplitude, couple = _region_factors(group, effects, settings.coupling)
    shared = couple[inside, None] * network + regions[inside]
    own = 0.5 * slow_series(rng, inside.size, n, tr)
    series = amplitude[inside, None] * (shared + own) + rng.standard_normal((inside.size, n), dtype=np.float32)
    series += 0.5 * (nuisance[0] + nuisance[1]) + 1000.0
    data = np.zeros(anat.mask.shape + (n,), np.float32)
    data[anat.mask] = series
    motion = np.cumsum(0.01 * rng.standard_normal((n, 6)), axis=0)
    confounds = pd.DataFrame(np.column_stack([nuisance.T, motion]), columns=list(CONFOUNDS))
    return data, confounds


def subject_paths(out_dir: str | Path, label: str) -> dict[str, Path]:
    func = Path(out_dir) / "derivatives" / "fmriprep" / f"sub-{label}" / "func"
    stem = f"sub-{label}_task-rest_space-{SPACE}"
    return {"bold": func / f"{stem}_desc-preproc_bold.nii.gz", "mask": func / f"{stem}_desc-brain_mask.nii.gz",
            "sidecar": func / f"{stem}_desc-preproc_bold.json",
            "confounds": func / f"sub-{label}_task-rest_desc-confounds_timeseries.tsv"}


def planned_runs(out_dir: str | Path, labels: Sequence[str]) -> dict[str, PlannedRun]:
    """The runs the workflow plans for the synthetic cohort (written by one job per subject later)."""
    runs = {}
    for label in labels:
        paths = subject_paths(out_dir, label)
        runs[label] = PlannedRun(label, str(paths["bold"]), str(paths["mask"]), str(paths["confounds"]),
                                 str(paths["sidecar"]), "synthetic cohort")
    return runs


def write_bold_subject(out_dir: str | Path, label: str, group: str, effects: Sequence[BoldEffect],
                       settings: BoldDemoSettings) -> dict[str, Path]:
    """Write one subject's run, mask, sidecar and confounds; return their paths."""
    data, confounds = synthesize_bold(label, group, effects, settings)
    paths = subject_paths(out_dir, label)
    paths["bold"].parent.mkdir(parents=True, exist_ok=True)
    affine = settings.grid.affine
    img = nib.Nifti1Image(data, affine)
    img.header.set_data_dtype(np.int16)  # nibabel picks the scale factor; 1000 +- 10 keeps 4 decimals
    img.header.set_zooms(tuple(float(z) for z in np.sqrt((affine[:3, :3] ** 2).sum(axis=0))) + (settings.tr,))
    save_nifti(img, paths["bold"])
    save_nifti(nib.Nifti1Image(anatomy(settings.grid).mask.astype(np.uint8), affine), paths["mask"])
    write_json({"RepetitionTime": settings.tr, "TaskName": "rest", "SkullStripped": False}, paths["sidecar"])
    write_tsv(confounds, paths["confounds"])
    return paths


def ground_truth(effects: Sequence[BoldEffect]) -> pd.DataFrame:
    atlas = aal116()
    return pd.DataFrame([{"group": e.group, "region": e.region, "aal_id": atlas.ids[atlas.names.index(e.region)],
                          "kind": e.kind, "strength": e.strength} for e in effects])


def participant_row(seed: int, label: str, group: str) -> dict:
    """participants.tsv's row: age and sex from a stream apart from the run's draws (for Table 1)."""
    demographics = np.random.default_rng([int(seed), label_key(label), 1])
    return {"participant_id": f"sub-{label}", "group": group, "age": int(demographics.integers(18, 66)),
            "sex": str(demographics.choice(["F", "M"]))}


def write_bold_tables(out_dir: str | Path, group_sizes: Mapping[str, int], effects: Sequence[BoldEffect] = DEFAULT_EFFECTS,
                      seed: int = 0) -> pd.DataFrame:
    """participants.tsv (participant_id, group, age, sex) and ground_truth.tsv (the effects of the cohort's
    groups), from the group sizes alone; return the participants table."""
    sizes = {g: int(n) for g, n in group_sizes.items() if int(n) > 0}
    unknown = sorted({e.group for e in effects} - set(group_sizes))
    if unknown:
        raise ConfigError(f"BOLD effects name groups {unknown} that the cohort does not have ({list(group_sizes)})")
    participants = pd.DataFrame([participant_row(seed, label, group) for label, group in demo_participants(sizes)],
                                columns=["participant_id", "group", "age", "sex"])
    write_tsv(ground_truth([e for e in effects if e.group in sizes]), Path(out_dir) / "ground_truth.tsv")
    write_tsv(participants, Path(out_dir) / "participants.tsv")
    return participants


def make_bold_cohort(out_dir: str | Path, group_sizes: Mapping[str, int], effects: Sequence[BoldEffect] = DEFAULT_EFFECTS,
                     settings: BoldDemoSettings = BoldDemoSettings()) -> pd.DataFrame:
    """Write every subject, participants.tsv and ground_truth.tsv; return the participants table."""
    participants = write_bold_tables(out_dir, group_sizes, effects, settings.seed)
    for pid, group in zip(participants["participant_id"], participants["group"]):
        write_bold_subject(out_dir, pid[4:], group, effects, settings)
        log.info("wrote %s (%s)", pid, group)
    return participants


def write_demo_subject(out_dir: str | Path, label: str, group: str, settings: BoldDemoSettings,
                       effects: Sequence[BoldEffect] = DEFAULT_EFFECTS) -> dict[str, Path]:
    """One subject of the workflow's synthetic cohort (``settings.grid``: the MNI box at ``fmri.voxel_mm``)."""
    return write_bold_subject(out_dir, label, group, effects, settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a synthetic resting-state BOLD cohort with planted effects.")
    parser.add_argument("out", type=Path)
    parser.add_argument("--sizes", nargs="+", default=["HC=10", "MWoA=10", "MWA=10"], help="GROUP=N ...")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--volumes", type=int, default=170)
    parser.add_argument("--effects", type=Path, default=None,
                        help="TSV of planted effects: group, region (AAL name), kind (amplitude | connectivity), strength")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sizes = {part.split("=")[0]: int(part.split("=")[1]) for part in args.sizes}
    make_bold_cohort(args.out, sizes, read_bold_effects(args.effects), BoldDemoSettings(seed=args.seed, volumes=args.volumes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
