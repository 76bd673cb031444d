"""Benchmark of the embedded preprocessing backend: seconds per subject per step, and peak memory.

Demo-like subjects are made from the MNI152NLin6Asym head (the embedded template): a random affine (up to
10 degrees, 10 mm, 5% scale), resampled to 1 x 1 x 1.25 mm voxels in LIA orientation, with mild noise.
Each step then runs as its own process, as a Snakemake job would:

- brain_extraction: the embedded backend's function (``headmri.backends``: deepbet)
- registration: the embedded backend's function (ANTs affine + resampling of brain and mask)
- label_resampling: a native-space label image moved to the MNI grid through the saved affine with
  nearest neighbour (what the freesurfer parcellation backend does with wmparc)

Printed per subject and step: the step's own wall and CPU seconds (imports excluded; CPU summed over
threads, a check on wall times taken on a busy machine), the job's seconds including Python start and
imports, and the job's peak resident memory (``ru_maxrss``; tracemalloc cannot see torch's allocations).

    python bench/bench_preprocess.py --subjects 3 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
STEPS = ("brain_extraction", "registration", "label_resampling")


# --- subjects ----------------------------------------------------------------------------------------


def random_affine(rng: np.random.Generator, max_deg=10.0, max_mm=10.0, max_scale=0.05) -> np.ndarray:
    """Subject scanner RAS mm -> MNI RAS mm: rotation, translation and scaling within the given bounds."""
    from scipy.spatial.transform import Rotation

    matrix = np.eye(4)
    rotation = Rotation.from_euler("xyz", rng.uniform(-max_deg, max_deg, 3), degrees=True).as_matrix()
    matrix[:3, :3] = rotation @ np.diag(1.0 + rng.uniform(-max_scale, max_scale, 3))
    matrix[:3, 3] = rng.uniform(-max_mm, max_mm, 3)
    return matrix


def lia_grid(shape=(192, 220, 180), voxel=(1.0, 1.0, 1.25)) -> np.ndarray:
    """A 1 x 1 x 1.25 mm LIA grid (i: right->left, j: superior->inferior, k: posterior->anterior at
    1.25 mm) centred on the head."""
    axes = np.array([[-1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]])  # columns: L, I, A
    affine = np.eye(4)
    affine[:3, :3] = axes @ np.diag(voxel)
    affine[:3, 3] = np.array([0.0, -18.0, 8.0]) - affine[:3, :3] @ ((np.array(shape) - 1) / 2)
    return affine


def make_subject(index: int, folder: Path, seed: int) -> Path:
    import nibabel as nib
    from nilearn.image import resample_img

    from headmri.templates import embedded_template

    rng = np.random.default_rng(seed + index)
    head = nib.load(embedded_template().head)
    truth = random_affine(rng)
    seen = nib.Nifti1Image(head.get_fdata(dtype=np.float32), np.linalg.inv(truth) @ head.affine)
    shape = (192, 220, 180)  # 192 x 220 x 225 mm: the whole head with margin
    affine = lia_grid(shape)
    moved = resample_img(seen, target_affine=affine, target_shape=shape, interpolation="linear",
                         force_resample=True, copy_header=True).get_fdata(dtype=np.float32)
    moved += rng.normal(0, 0.02 * float(moved.max()), moved.shape).astype(np.float32) * (moved > 0)
    path = folder / f"sub-bench{index:02d}" / f"sub-bench{index:02d}_T1w.nii.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(moved.clip(0), affine), path)
    np.savetxt(path.with_name("truth_affine.txt"), truth)
    return path


# --- steps (run in a child process) ------------------------------------------------------------------


def paths_of(t1w: Path) -> dict[str, Path]:
    base = t1w.parent / t1w.name.replace("_T1w.nii.gz", "")
    return {
        "brain": Path(f"{base}_desc-brain_T1w.nii.gz"),
        "mask": Path(f"{base}_desc-brain_mask.nii.gz"),
        "brain_mni": Path(f"{base}_space-MNI_desc-brain_T1w.nii.gz"),
        "mask_mni": Path(f"{base}_space-MNI_desc-brain_mask.nii.gz"),
        "xfm": Path(f"{base}_xfm.mat"),
        "affine": Path(f"{base}_affine.txt"),
        "labels_mni": Path(f"{base}_space-MNI_dseg.nii.gz"),
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    return usage.ru_utime + usage.ru_stime


def run_step(step: str, t1w: Path, threads: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one step, imports excluded."""
    p = paths_of(t1w)
    subject = t1w.parent.name
    if step == "brain_extraction":
        import deepbet.bet  # noqa: F401  (torch and deepbet imported before the clock starts)

        from headmri.backends import load

        run = partial(load("brain_extraction", "embedded"), t1w, p["brain"], p["mask"], subject=subject, threads=threads)
    elif step == "registration":
        import ants  # noqa: F401  (imported before the clock starts)

        from headmri.backends import load

        run = partial(load("registration", "embedded"), p["brain"], p["mask"], None, None, p["brain_mni"], p["mask_mni"],
                      p["xfm"], p["affine"], transform="AffineFast", subject=subject, threads=threads)
    else:
        run = partial(resample_labels, p["mask"], p["affine"], p["brain_mni"], p["labels_mni"])
    wall, cpu = time.perf_counter(), _cpu_seconds()
    run()
    return time.perf_counter() - wall, _cpu_seconds() - cpu


def resample_labels(native_mask: Path, affine_txt: Path, mni_reference: Path, out: Path) -> None:
    """Nearest-neighbour move of a native label image (the mask split into 8 octant labels, a stand-in
    for wmparc) onto the MNI grid through the subject->MNI affine."""
    import nibabel as nib
    from scipy.ndimage import affine_transform

    mask_img = nib.load(native_mask)
    mask = np.asanyarray(mask_img.dataobj) > 0
    grid = np.indices(mask.shape)
    centre = np.array([int(np.median(axis[mask])) for axis in grid])
    labels = (mask * (1 + (grid[0] > centre[0]) + 2 * (grid[1] > centre[1]) + 4 * (grid[2] > centre[2]))).astype(np.int16)
    reference = nib.load(mni_reference)
    # MNI voxel -> MNI mm -> subject mm -> subject voxel
    matrix = np.linalg.inv(mask_img.affine) @ np.linalg.inv(np.loadtxt(affine_txt)) @ reference.affine
    moved = affine_transform(labels, matrix, output_shape=reference.shape, order=0, mode="constant", cval=0)
    nib.save(nib.Nifti1Image(moved.astype(np.int16), reference.affine), out)


def worker(step: str, t1w: str, threads: int) -> None:
    seconds, cpu_seconds = run_step(step, Path(t1w), threads)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB
    print("RESULT " + json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_mib": peak_mib}))


def run_job(step: str, t1w: Path, threads: int) -> dict:
    env = dict(os.environ, ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--worker", step, str(t1w), "--threads", str(threads)],
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{step} failed for {t1w}:\n{done.stderr[-3000:]}")
    result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])
    return {"step": step, "job_seconds": wall, **result}


def registration_error(t1w: Path) -> tuple[float, float]:
    """How far the recovered affine is from the one the subject was made with (degrees, max mm)."""
    import nibabel as nib

    from headmri.preprocess.transforms import affine_error

    p = paths_of(t1w)
    mask = nib.load(p["mask"])
    points = nib.affines.apply_affine(mask.affine, np.argwhere(np.asanyarray(mask.dataobj) > 0)[::50])
    return affine_error(np.loadtxt(p["affine"]), np.loadtxt(t1w.with_name("truth_affine.txt")), points)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the files here (default: a temp dir)")
    parser.add_argument("--worker", nargs=2, metavar=("STEP", "T1W"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], args.threads)
        return
    sys.path.insert(0, str(REPO))
    folder = args.workdir or Path(tempfile.mkdtemp(prefix="bench_preprocess_"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"# {args.subjects} subjects, {args.threads} threads, files in {folder}")
    print(f"# load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    rows = []
    for index in range(1, args.subjects + 1):
        t1w = make_subject(index, folder, args.seed)
        for step in STEPS:
            row = {"subject": t1w.parent.name, **run_job(step, t1w, args.threads)}
            rows.append(row)
            print(f"{row['subject']}  {step:17s} step {row['seconds']:6.1f} s (CPU {row['cpu_seconds']:6.1f} s)   "
                  f"job {row['job_seconds']:6.1f} s   peak {row['peak_mib']:7.0f} MiB", flush=True)
        angle, mm = registration_error(t1w)
        print(f"{t1w.parent.name}  registration error vs truth: {angle:.2f} degrees, {mm:.2f} mm (max over brain)")
    print(f"# load average after: {os.getloadavg()[0]:.2f}")
    print("\nstep                 step s (mean)   CPU s (mean)   job s (mean)   peak MiB (max)")
    subjects = sorted({r["subject"] for r in rows})
    for step in STEPS:
        mine = [r for r in rows if r["step"] == step]
        print(f"{step:20s} {np.mean([r['seconds'] for r in mine]):14.1f} {np.mean([r['cpu_seconds'] for r in mine]):14.1f}"
              f" {np.mean([r['job_seconds'] for r in mine]):14.1f} {max(r['peak_mib'] for r in mine):16.0f}")
    totals = {key: np.mean([sum(r[key] for r in rows if r["subject"] == s) for s in subjects])
              for key in ("seconds", "cpu_seconds", "job_seconds")}
    print(f"{'total per subject':20s} {totals['seconds']:14.1f} {totals['cpu_seconds']:14.1f} {totals['job_seconds']:14.1f}")

if __name__ == "__main__":
    main()
