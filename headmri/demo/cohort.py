"""The demo cohort: a BIDS dataset of synthetic T1w heads made from real anatomy, with planted effects.

Every subject starts from the MNI152NLin6Asym whole head. Patients get their group's planted effect
(a relative intensity change in named Desikan-Killiany regions of the embedded atlas, in MNI space).
Then each head is placed in a scanner with a random affine (up to 10 degrees, 10 mm, 5 % scale), warped by
a smooth random displacement field (a few mm: anatomy an affine registration cannot undo), sampled on a
native-like grid (1 x 1 x 1.25 mm, LIA, slightly oblique), and given a smooth bias field, a site's
contrast, Rician noise and a random intensity scale.

A subject is a function of (seed, label, group) only: its random draws come from
``numpy.random.default_rng([seed, key(label)])`` (``key``: a stable hash of the label), its site from its
number within the group (sites alternate within each group). Labels are per group (``hc001``,
``migraine001``, see ``headmri.demo``), so a larger group adds subjects and leaves every existing one,
bytes and label, as it was; the workflow makes each subject in its own job (``make_demo_subject``) and the
cohort's tables in another, from the configuration alone (``write_cohort_tables``). ``make_demo_cohort``
makes all of it in one process (the ``headmri-demo`` command).

Written (each file atomically):

- per subject: ``sub-<label>/anat/sub-<label>_T1w.nii.gz``, and in ``derivatives/truth/sub-<label>/anat/``
  the true brain mask in native space (``_desc-brain_mask.nii.gz``) and the true scanner -> MNI affine
  (``_from-T1w_to-MNI152NLin6Asym_affine.txt``, the affine part; the warp comes on top)
- per cohort: ``participants.tsv`` (participant_id, group, site, age, sex), ``dataset_description.json``,
  ``README``, ``.bidsignore``, ``ground_truth.tsv`` (group, region, name, label (LUT code), hemisphere,
  tissue, effect) and ``derivatives/truth/parameters.tsv`` with every draw
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from headmri import __version__
from headmri.atomic import atomic_path, save_nifti, write_json, write_text, write_tsv
from headmri.demo import demo_participants, subject_number, synth
from headmri.demo.effects import PlantedEffect, effect_gain, effect_map, ground_truth_table, missing_from_atlas
from headmri.errors import ConfigError
from headmri.templates import SPACE, embedded_template

log = logging.getLogger(__name__)

INT16_MAX = 32767
# The template's background is not zero (FSL's MNI152 has a faint haze around the head); below this
# intensity, after smoothing, a voxel is air. Scalp and skull marrow sit well above it.
HEAD_THRESHOLD = 1000.0


@dataclass(frozen=True)
class CohortAnatomy:
    """What every subject is made from: the template head, its brain mask and the atlas, on one grid."""

    head: np.ndarray  # float32, air set to 0
    brain_mask: np.ndarray  # float32 0/1
    atlas: np.ndarray  # int16 LUT codes
    affine: np.ndarray  # template voxel -> MNI mm
    white_matter_level: float  # median white-matter intensity: the reference for noise and contrast
    centre_mm: np.ndarray  # centre of the brain in MNI mm: the head rotates about it
    labels: frozenset[int]  # the LUT codes the atlas holds: what an effect can be planted in


def load_anatomy(atlas: str | os.PathLike | None = None) -> CohortAnatomy:
    """The embedded template and atlas (built in memory, unless an atlas file is given); cached per
    process, since every cohort made in it starts from the same anatomy (the arrays are never modified)."""
    return _load_anatomy(None if atlas is None else str(Path(atlas).resolve()))


@lru_cache(maxsize=1)
def _load_anatomy(atlas: str | None) -> CohortAnatomy:
    from headmri.parcellation.embedded_atlas import embedded_atlas_labels

    template = embedded_template()
    head_img = nib.load(template.head)
    head = np.asarray(head_img.dataobj, dtype=np.float32)
    brain = (np.asarray(nib.load(template.brain_mask).dataobj) > 0).astype(np.float32)
    atlas_img = nib.load(atlas) if atlas is not None else embedded_atlas_labels(template.head, template.brain_mask)
    if atlas_img.shape[:3] != head.shape or not np.allclose(atlas_img.affine, head_img.affine, atol=1e-3):
        raise ConfigError(f"the atlas {atlas} is not on the template grid {head.shape}")
    codes = np.asarray(atlas_img.dataobj).astype(np.int16)
    air = ~ndimage.binary_fill_holes(ndimage.gaussian_filter(head, 2.0) > HEAD_THRESHOLD)
    head[air] = 0.0
    wm = (codes >= 3000) & (codes < 5000)
    centre = np.array(np.nonzero(brain)).mean(axis=1)
    return CohortAnatomy(
        head=head,
        brain_mask=brain,
        atlas=codes,
        affine=head_img.affine.copy(),
        white_matter_level=float(np.median(head[wm])),
        centre_mm=head_img.affine[:3, :3] @ centre + head_img.affine[:3, 3],
        labels=frozenset(int(c) for c in np.unique(codes) if c > 0),
    )


def check_effects_in_atlas(effects: Sequence[PlantedEffect], anatomy: CohortAnatomy, atlas=None) -> None:
    """Every planted LUT label must be in the atlas the effects are planted into; a ConfigError names those
    that are not (the embedded atlas holds Desikan-Killiany cortex and white matter, 14 subcortical
    structures, the brainstem and the cerebellar cortex: docs/parcellation.md)."""
    missing = missing_from_atlas(list(effects), anatomy.labels)
    if missing:
        source = f"the atlas {atlas}" if atlas is not None else "the embedded atlas"
        raise ConfigError(
            f"planted effects name labels that {source} does not hold, so nothing would be planted there: "
            f"{', '.join(missing)}; the embedded atlas has Desikan-Killiany cortex and white matter, "
            "14 subcortical structures, the brainstem and the cerebellar cortex (docs/parcellation.md)"
        )


@dataclass(frozen=True)
class SubjectPlan:
    label: str
    group: str
    number: int  # 1-based position within its group (from the label): sites alternate with it
    site: synth.SiteProfile


def plan_subject(label: str, group: str) -> SubjectPlan:
    """A subject from its label and group alone. Sites alternate within each group (odd numbers siteA,
    even siteB), so site and group are independent (a classifier cannot reach the group through the site)."""
    number = subject_number(label, group)
    return SubjectPlan(label=label, group=group, number=number, site=synth.SITES[(number - 1) % len(synth.SITES)])


def plan_subjects(group_sizes: Mapping[str, int]) -> list[SubjectPlan]:
    """Every subject of a cohort, in demo_participants order."""
    return [plan_subject(label, group) for label, group in demo_participants(group_sizes)]


def label_key(label: str) -> int:
    """A stable 64-bit number for a label (SHA-256; Python's own hash() differs between processes)."""
    return int.from_bytes(hashlib.sha256(label.encode("utf-8")).digest()[:8], "little")


def subject_rng(seed: int, label: str) -> np.random.Generator:
    """The generator of every image draw of one subject: a function of the seed and the label only."""
    return np.random.default_rng([int(seed), label_key(label)])


def participant_row(seed: int, plan: SubjectPlan) -> dict:
    """participants.tsv's row of a subject; age and sex come from a stream apart from the image draws."""
    demographics = np.random.default_rng([int(seed), label_key(plan.label), 1])
    return {
        "participant_id": f"sub-{plan.label}",
        "group": plan.group,
        "site": plan.site.name,
        "age": int(demographics.integers(18, 66)),
        "sex": str(demographics.choice(["F", "M"])),
    }


def parameters_row(seed: int, plan: SubjectPlan) -> dict:
    """The subject's draws (rotation, translation, ..., effect strength) as its image job makes them: the
    first draws of subject_rng, so the table needs no image."""
    draw = synth.draw_subject(subject_rng(seed, plan.label), plan.site)
    return {"participant_id": f"sub-{plan.label}", "group": plan.group, "site": plan.site.name, **draw.row()}


@dataclass(frozen=True)
class SyntheticSubject:
    t1w: nib.Nifti1Image
    brain_mask: nib.Nifti1Image
    subject_to_mni: np.ndarray  # 4x4, scanner RAS mm -> MNI RAS mm (affine part of the truth)
    draw: synth.SubjectDraw


def subject_fields(rng: np.random.Generator, shape: tuple[int, int, int],
                   draw: synth.SubjectDraw) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """A subject's smooth random fields on its native grid, in the order its stream draws them (after
    ``draw_subject``): the warp (three displacement fields, mm) and the log bias field. A replay of the stream
    gives a cohort's true bias fields (bench/bench_bias_correction.py)."""
    per_axis = draw.warp_rms_mm / np.sqrt(3.0)
    warp = tuple(synth.smooth_field(shape, rng, n_basis=4, rms=per_axis) for _ in range(3))
    return warp, synth.smooth_field(shape, rng, n_basis=3, rms=draw.bias_rms)  # type: ignore[return-value]


def synthesize_subject(
    anatomy: CohortAnatomy,
    group_effect: np.ndarray | None,
    rng: np.random.Generator,
    site: synth.SiteProfile,
    *,
    voxel_mm: tuple[float, float, float] = (1.0, 1.0, 1.25),
    orientation: str = "LIA",
    restore_brain_mean: bool = False,
) -> SyntheticSubject:
    """One subject: effect in MNI space, then affine + warp + native grid, bias, contrast, noise, scale.
    ``restore_brain_mean``: a patient's brain keeps the controls' mean intensity (``effect_gain``)."""
    draw = synth.draw_subject(rng, site)  # the generator's first draws: parameters_row repeats them
    head = anatomy.head
    if group_effect is not None:
        head = head * effect_gain(group_effect, draw.effect_scale, head, anatomy.brain_mask,
                                  restore_brain_mean=restore_brain_mean)
    centre = anatomy.centre_mm
    to_scanner = synth.mni_to_scanner(draw, centre)
    oblique = synth.rotation_matrix(np.array(draw.oblique_axis), draw.oblique_deg)
    shape, native_affine = synth.native_grid(
        to_scanner[:3, :3] @ centre + to_scanner[:3, 3], voxel_mm=voxel_mm, orientation=orientation, oblique=oblique
    )
    warp, log_bias = subject_fields(rng, shape, draw)
    scanner_to_voxel = np.linalg.inv(anatomy.affine) @ np.linalg.inv(to_scanner)
    coords = synth.coordinate_map(shape, native_affine, scanner_to_voxel, warp)  # type: ignore[arg-type]
    del warp
    image, mask = synth.resample([head, anatomy.brain_mask], coords)
    mask = mask > 0.5
    del coords
    level = anatomy.white_matter_level
    image = synth.apply_contrast(image, gamma=draw.gamma, reference=level)
    image *= np.exp(log_bias)
    del log_bias
    image = synth.add_rician_noise(image, draw.noise_fraction * level, rng)
    image *= np.float32(draw.intensity_scale)
    data = np.clip(np.rint(image), 0, INT16_MAX).astype(np.int16)
    return SyntheticSubject(
        t1w=_scanner_image(data, native_affine),
        brain_mask=_scanner_image(mask.astype(np.uint8), native_affine),
        subject_to_mni=np.linalg.inv(to_scanner),
        draw=draw,
    )


def _scanner_image(data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)  # 1: scanner anatomical
    img.set_sform(affine, code=1)
    return img


def check_parameters(
    group_sizes: Mapping[str, int], native_voxel_mm: Sequence[float], orientation: str, seed: int = 0
) -> tuple[tuple[float, float, float], str]:
    if any(int(n) < 0 for n in group_sizes.values()) or sum(int(n) for n in group_sizes.values()) < 1:
        raise ConfigError(f"demo group sizes must be >= 0 with at least one subject in all, got {dict(group_sizes)}")
    return check_grid(native_voxel_mm, orientation, seed)


def check_grid(native_voxel_mm: Sequence[float], orientation: str, seed: int = 0) -> tuple[tuple[float, float, float], str]:
    """The seed, native voxel size and orientation code, checked; (voxel, upper-case code)."""
    if int(seed) < 0:
        raise ConfigError(f"the demo seed must be a non-negative integer, got {seed}")
    voxel = tuple(float(v) for v in native_voxel_mm)
    if len(voxel) != 3 or any(not 0.2 <= v <= 4.0 for v in voxel):
        raise ConfigError(f"native_voxel_mm must be three sizes between 0.2 and 4 mm, got {native_voxel_mm}")
    code = orientation.upper()
    pairs = ("LR", "AP", "SI")
    axes = [next((i for i, pair in enumerate(pairs) if c in pair), -1) for c in code]
    if len(code) != 3 or sorted(axes) != [0, 1, 2]:
        raise ConfigError(f"orientation must name each axis once (e.g. LIA, RAS, LPS), got {orientation!r}")
    return voxel, code  # type: ignore[return-value]


# --- one subject per task (runs in worker processes when threads > 1) -----------------------------------
_WORKER: dict = {}


def _init_worker(anatomy: CohortAnatomy, effects: list[PlantedEffect], restore_brain_mean: bool = False) -> None:
    _WORKER["anatomy"] = anatomy
    _WORKER["effects"] = effects
    _WORKER["maps"] = {}
    _WORKER["restore_brain_mean"] = bool(restore_brain_mean)


def _group_effect(group: str) -> np.ndarray | None:
    maps = _WORKER["maps"]
    if group not in maps:
        effect = effect_map(_WORKER["anatomy"].atlas, _WORKER["effects"], group)
        maps[group] = effect if effect.any() else None
    return maps[group]


def _init_pool_worker(anatomy: CohortAnatomy, effects: list[PlantedEffect], restore_brain_mean: bool) -> None:
    import torch

    torch.set_num_threads(1)  # parallel over subjects, one thread each: no oversubscription
    _init_worker(anatomy, effects, restore_brain_mean)


def _write_subject(
    plan: SubjectPlan, out_dir: str, seed: int, voxel_mm: tuple[float, float, float], orientation: str
) -> dict:
    """Make and write one subject (its image and truth files); return its id, group and the seconds taken."""
    start = time.perf_counter()
    subject = synthesize_subject(
        _WORKER["anatomy"],
        _group_effect(plan.group),
        subject_rng(seed, plan.label),
        plan.site,
        voxel_mm=voxel_mm,
        orientation=orientation,
        restore_brain_mean=_WORKER["restore_brain_mean"],
    )
    sub = f"sub-{plan.label}"
    bids = Path(out_dir)
    save_nifti(subject.t1w, bids / sub / "anat" / f"{sub}_T1w.nii.gz")
    truth = bids / "derivatives" / "truth" / sub / "anat"
    save_nifti(subject.brain_mask, truth / f"{sub}_desc-brain_mask.nii.gz")
    with atomic_path(truth / f"{sub}_from-T1w_to-{SPACE}_affine.txt") as tmp:
        np.savetxt(tmp, subject.subject_to_mni, fmt="%.8f")
    return {"participant_id": sub, "group": plan.group, "seconds": round(time.perf_counter() - start, 2)}


def make_demo_subject(
    out_bids_dir: str | os.PathLike,
    *,
    label: str,
    group: str,
    seed: int,
    effects: Sequence[PlantedEffect],
    native_voxel_mm: Sequence[float] = (1.0, 1.0, 1.25),
    orientation: str = "LIA",
    threads: int = 1,
    atlas: str | os.PathLike | None = None,
    restore_brain_mean: bool = False,
) -> float:
    """Write one subject of a demo cohort (image and truth files) to ``out_bids_dir``; return the seconds.

    The subject depends on (seed, label, group) and its group's effects only (``effects`` of other groups
    are ignored), so it is the same file whichever cohort it belongs to. ``label`` must be a label of
    ``group`` (``hc003`` for HC). ``restore_brain_mean``: see :func:`headmri.demo.effects.effect_gain`.
    """
    voxel, code = check_grid(native_voxel_mm, orientation, seed)
    plan = plan_subject(label, group)
    used = [e for e in effects if e.group == group]
    anatomy = load_anatomy(atlas)
    check_effects_in_atlas(used, anatomy, atlas)
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))  # the caller's thread budget, restored afterwards
    try:
        _init_worker(anatomy, used, restore_brain_mean)
        row = _write_subject(plan, str(out_bids_dir), int(seed), voxel, code)
    finally:
        _WORKER.clear()
        torch.set_num_threads(previous)
    log.info("%s (%s) written in %.1f s", row["participant_id"], group, row["seconds"])
    return float(row["seconds"])


def write_cohort_tables(
    out_bids_dir: str | os.PathLike,
    *,
    group_sizes: Mapping[str, int],
    seed: int,
    native_voxel_mm: Sequence[float] = (1.0, 1.0, 1.25),
    orientation: str = "LIA",
) -> pd.DataFrame:
    """Write the cohort's tables and metadata from the seed and group sizes alone (no image is read):
    dataset_description.json, README, .bidsignore, derivatives/truth/ (dataset_description.json,
    parameters.tsv) and, last, participants.tsv. Return participants.tsv as a table."""
    voxel, code = check_parameters(group_sizes, native_voxel_mm, orientation, seed)
    group_sizes = {g: int(n) for g, n in group_sizes.items() if int(n) > 0}  # size 0 leaves a group out
    out = Path(out_bids_dir)
    plans = plan_subjects(group_sizes)
    participants = pd.DataFrame(
        [participant_row(seed, plan) for plan in plans], columns=["participant_id", "group", "site", "age", "sex"]
    )
    write_tsv(pd.DataFrame([parameters_row(seed, plan) for plan in plans]),
              out / "derivatives" / "truth" / "parameters.tsv")
    write_json(_description(group_sizes, seed, voxel, code), out / "dataset_description.json")
    write_json(
        {
            "Name": "headmri demo cohort: ground truth",
            "BIDSVersion": "1.9.0",
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "headmri-demo", "Version": __version__}],
        },
        out / "derivatives" / "truth" / "dataset_description.json",
    )
    write_text(_README.format(seed=seed, sizes=dict(group_sizes)), out / "README")
    write_text("ground_truth.tsv\n", out / ".bidsignore")
    write_tsv(participants, out / "participants.tsv")  # last: with make_demo_cohort, its presence means complete
    return participants


def write_ground_truth(out_bids_dir: str | os.PathLike, *, effects: Sequence[PlantedEffect]) -> pd.DataFrame:
    """Write ground_truth.tsv (one row per group and LUT label changed) for the effects given (those of
    the cohort's groups); return it."""
    table = ground_truth_table(list(effects))
    write_tsv(table, Path(out_bids_dir) / "ground_truth.tsv")
    return table


def make_demo_cohort(
    out_bids_dir: str | os.PathLike,
    *,
    group_sizes: Mapping[str, int],
    seed: int,
    effects: Sequence[PlantedEffect],
    native_voxel_mm: Sequence[float] = (1.0, 1.0, 1.25),
    orientation: str = "LIA",
    threads: int = 1,
    atlas: str | os.PathLike | None = None,
    restore_brain_mean: bool = False,
) -> pd.DataFrame:
    """Write a whole demo BIDS dataset to ``out_bids_dir`` in this process; return participants.tsv as a table.

    Each subject is what make_demo_subject writes (byte for byte), the tables what write_ground_truth and
    write_cohort_tables write (participants.tsv last: when it exists, the cohort is complete). ``effects`` for groups absent from
    ``group_sizes`` are ignored. ``atlas`` is the embedded atlas file (the workflow's cached one); without
    it the atlas is built in memory. ``threads`` > 1 makes subjects in parallel processes.
    """
    voxel, code = check_parameters(group_sizes, native_voxel_mm, orientation, seed)
    group_sizes = {g: int(n) for g, n in group_sizes.items() if int(n) > 0}  # size 0 leaves a group out
    out = Path(out_bids_dir)
    plans = plan_subjects(group_sizes)
    used = [e for e in effects if e.group in group_sizes]
    for e in effects:
        if e.group not in group_sizes:
            log.info("effect on %s in group %s ignored: no such group in this cohort", e.region, e.group)
    controls = [g for g in group_sizes if not any(e.group == g for e in used)]
    log.info("groups without a planted effect (controls): %s", controls)
    log.info("loading the template and the embedded atlas")
    anatomy = load_anatomy(atlas)
    check_effects_in_atlas(used, anatomy, atlas)
    jobs = [(plan, str(out), int(seed), voxel, code) for plan in plans]
    # Worker processes are forked: they inherit the module state, and a Snakemake script (which has no
    # __main__ guard) must not be re-imported as spawn would do. Without fork, subjects run in turn.
    parallel = min(max(1, int(threads)), len(jobs)) > 1 and "fork" in multiprocessing.get_all_start_methods()
    if parallel:
        with ProcessPoolExecutor(
            max_workers=min(int(threads), len(jobs)),
            mp_context=multiprocessing.get_context("fork"),
            initializer=_init_pool_worker,
            initargs=(anatomy, list(used), restore_brain_mean),
        ) as pool:
            _collect(pool.map(_write_subject, *zip(*jobs)), len(jobs))
    else:
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(max(1, int(threads)))  # the caller's thread budget, restored afterwards
        try:
            _init_worker(anatomy, list(used), restore_brain_mean)
            _collect((_write_subject(*job) for job in jobs), len(jobs))
        finally:
            _WORKER.clear()
            torch.set_num_threads(previous)
    write_ground_truth(out, effects=used)
    return write_cohort_tables(out, group_sizes=group_sizes, seed=seed, native_voxel_mm=voxel, orientation=code)


def _collect(results, total: int) -> list[dict]:
    rows = []
    for done, row in enumerate(results, start=1):
        log.info("[%d/%d] %s (%s) written in %.1f s", done, total, row["participant_id"], row["group"], row["seconds"])
        rows.append(row)
    return rows


def _description(group_sizes: Mapping[str, int], seed: int, voxel: tuple, orientation: str) -> dict:
    return {
        "Name": "headmri synthetic demo cohort",
        "BIDSVersion": "1.9.0",
        "DatasetType": "raw",
        "License": "CC0 (derived from the MNI152NLin6Asym template, see its licence)",
        "GeneratedBy": [
            {
                "Name": "headmri-demo",
                "Version": __version__,
                "Description": (
                    f"seed={seed}; group_sizes={dict(group_sizes)}; native voxel {voxel} mm, {orientation}"
                ),
            }
        ],
    }


_README = """Synthetic T1-weighted heads made by headmri-demo from the MNI152NLin6Asym template.
seed {seed}, group sizes {sizes}.
Patients carry planted regional effects listed in ground_truth.tsv; derivatives/truth holds the true
brain masks and scanner-to-MNI affines. Not real people; for testing the pipeline only.
"""
