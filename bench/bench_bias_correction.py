"""Benchmark: N4 bias-field correction (``preprocessing.bias_correction: n4``), its speed against its accuracy.

A demo cohort knows each subject's true bias field: the generator multiplies the image by
``exp(smooth_field(...))`` drawn from the subject's own random stream (``headmri.demo.cohort.synthesize_subject``),
so replaying that stream gives the field exactly. For each subject and each N4 setting (shrink factor and
iterations per level), this runs ``headmri.preprocess.bias.n4_field`` on the subject's T1w inside its true brain
mask (the workflow corrects the extracted brain; the generator's mask stands in for it) and reports:

- ``seconds``: N4's wall time (on ``--threads`` ITK threads);
- ``field_corr``: the correlation of N4's log field with the true log field inside the brain;
- ``residual_pct``: the RMS of what N4 leaves of the true field (log fields, each less its mean inside the
  brain), in per cent, beside ``true_pct``, the true field's own RMS;
- ``true_field_planted_ratio``: the true field's mean over the planted structures against the rest (how much
  the scanner alone darkens or brightens them);
- ``planted_ratio_before`` / ``_after``: the mean of ``--planted``'s planted structures over the rest of cortex
  and white matter, before and after; for patients and controls, so the summary's ``contrast_kept`` says how
  much of the planted darkening the correction leaves (N4 cannot tell a large structure's darkening from a
  smooth field);
- ``vs_first_pct``: the 99th percentile of the absolute difference between this setting's corrected brain and
  the first setting's, in per cent (each rescaled to the same median).

The settings are ``shrink:iterations[:spline]`` (``spline``: antspyx's ``spline_param``, the B-spline mesh
spacing in mm; left out: antspyx's default mesh, what ``preprocessing.bias_correction: n4`` runs).

    python bench/bench_bias_correction.py --bids /tmp/seeds/mixed_e/results/demo/bids --seed 909 \\
        --subjects 3 --planted migraine --settings 4:50x50x50x50,6:50x50x50x50,4:50x50x50x50:200 --out n4.tsv
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import date
from pathlib import Path
from typing import Optional

import nibabel as nib
import numpy as np
import pandas as pd

Setting = tuple[int, tuple[int, ...], Optional[float]]


def parse_setting(text: str) -> Setting:
    """``6:50x50x30x20`` -> shrink 6, iterations (50, 50, 30, 20), antspyx's default mesh; ``4:50x50x50x50:200``
    -> a B-spline mesh of 200 mm spacing (``spline_param``)."""
    shrink, iterations, *spline = text.split(":")
    return int(shrink), tuple(int(i) for i in iterations.split("x")), float(spline[0]) if spline else None


def planted_mask(bids: Path, sub: str, image: nib.Nifti1Image, codes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The planted labels and the rest of cortex and white matter on the native grid: the template atlas moved
    through the true affine (the generator's warp of about 2 mm left out)."""
    from scipy import ndimage

    from headmri.demo.cohort import load_anatomy

    anatomy = load_anatomy()
    to_mni = np.loadtxt(bids / "derivatives" / "truth" / sub / "anat" / f"{sub}_from-T1w_to-MNI152NLin6Asym_affine.txt")
    atlas = ndimage.affine_transform(anatomy.atlas, np.linalg.inv(anatomy.affine) @ to_mni @ image.affine,
                                     output_shape=image.shape[:3], order=0)
    region = np.isin(atlas, codes)
    return region, (atlas >= 1000) & (atlas < 5000) & ~region


def true_log_field(seed: int, label: str, group: str, shape: tuple[int, ...]) -> np.ndarray:
    """The generator's log bias field of one subject, replayed from its random stream (synthesize_subject's order)."""
    from headmri.demo import synth
    from headmri.demo.cohort import plan_subject, subject_fields, subject_rng

    rng = subject_rng(seed, label)
    draw = synth.draw_subject(rng, plan_subject(label, group).site)
    return subject_fields(rng, shape, draw)[1]


def centred(values: np.ndarray) -> np.ndarray:
    return values - values.mean()


def measure(bids: Path, seed: int, label: str, group: str, settings: list[Setting], codes: list[int]) -> list[dict]:
    """One subject under every setting; ``codes``: the planted labels whose brightness against the rest of the
    brain (``planted_ratio``) is measured before and after the correction."""
    from headmri.preprocess.bias import n4_field

    sub = f"sub-{label}"
    image = nib.load(bids / sub / "anat" / f"{sub}_T1w.nii.gz")
    mask = np.asanyarray(nib.load(bids / "derivatives" / "truth" / sub / "anat" / f"{sub}_desc-brain_mask.nii.gz").dataobj) > 0
    data = np.where(mask, np.asanyarray(image.dataobj, dtype=np.float32), 0)
    true_log = true_log_field(seed, label, group, data.shape)
    truth = centred(true_log[mask])
    region, rest = (m & mask for m in planted_mask(bids, sub, image, codes))
    true_ratio = float(np.exp(true_log[region]).mean() / np.exp(true_log[rest]).mean())
    rows, first = [], None
    for shrink, iterations, spline in settings:
        started = time.perf_counter()
        field = n4_field(data, mask, image.header.get_zooms()[:3], shrink=shrink, iterations=iterations, spline_mm=spline)
        seconds = time.perf_counter() - started
        estimate = centred(np.log(field[mask]))
        after = np.where(mask, data / field, 0)
        corrected = after[mask] / np.median(after[mask])
        first = corrected if first is None else first
        rows.append({"subject": sub, "group": group, "shrink": shrink, "iterations": "x".join(map(str, iterations)),
                     "spline_mm": spline or "default",
                     "true_field_planted_ratio": round(true_ratio, 4),
                     "planted_ratio_before": round(float(data[region].mean() / data[rest].mean()), 4),
                     "planted_ratio_after": round(float(after[region].mean() / after[rest].mean()), 4),
                     "seconds": round(seconds, 2), "field_corr": round(float(np.corrcoef(estimate, truth)[0, 1]), 4),
                     "residual_pct": round(100 * float(np.sqrt(np.mean((truth - estimate) ** 2))), 2),
                     "true_pct": round(100 * float(np.sqrt(np.mean(truth ** 2))), 2),
                     "vs_first_pct": round(100 * float(np.percentile(np.abs(corrected - first), 99)), 2)})
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bids", type=Path, required=True, help="a demo cohort (headmri-demo or the workflow's results/demo/bids)")
    parser.add_argument("--seed", type=int, required=True, help="the seed the cohort was made with")
    parser.add_argument("--subjects", type=int, default=3, help="the first N participants of each of the two groups")
    parser.add_argument("--planted", default="migraine", help="the patient group whose planted structures are measured")
    parser.add_argument("--reference", default="HC")
    parser.add_argument("--settings", default="4:50x50x50x50,6:50x50x50x50", help="shrink:iterations, comma-separated; the first is the reference")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bias_correction.tsv"))
    args = parser.parse_args()
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(args.threads)  # read when ITK first starts threads
    settings = [parse_setting(s) for s in args.settings.split(",")]
    participants = pd.read_csv(args.bids / "participants.tsv", sep="\t")
    participants = participants[participants["group"].isin([args.reference, args.planted])].groupby("group").head(args.subjects)
    truth = pd.read_csv(args.bids / "ground_truth.tsv", sep="\t")
    codes = truth.loc[truth["group"] == args.planted, "label"].astype(int).tolist()
    rows = []
    for participant, group in zip(participants["participant_id"], participants["group"]):
        rows += measure(args.bids, args.seed, participant.removeprefix("sub-"), group, settings, codes)
    table = pd.DataFrame(rows).assign(date=date.today().isoformat(), machine=f"{platform.node()} ({platform.machine()})",
                                      threads=args.threads)
    table.to_csv(args.out, sep="\t", index=False)
    print(summary(table, args.planted, args.reference).to_string())


def summary(table: pd.DataFrame, planted: str, reference: str) -> pd.DataFrame:
    """Per setting: medians of the per-subject numbers, and the planted contrast (the patients' mean planted
    ratio less the controls') before and after the correction, with the fraction of it kept."""
    keys = ["shrink", "iterations", "spline_mm"]
    out = table.groupby(keys, sort=False)[["seconds", "field_corr", "residual_pct", "true_pct", "vs_first_pct"]].median()
    means = table.groupby(keys + ["group"], sort=False)[["planted_ratio_before", "planted_ratio_after"]].mean()
    contrast = means.xs(planted, level="group") - means.xs(reference, level="group")
    out["contrast_before"] = contrast["planted_ratio_before"].round(3)
    out["contrast_after"] = contrast["planted_ratio_after"].round(3)
    out["contrast_kept"] = (contrast["planted_ratio_after"] / contrast["planted_ratio_before"]).round(2)
    return out


if __name__ == "__main__":
    main()
