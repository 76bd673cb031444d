"""Benchmark: ClinicaDL 2.x slice extraction and slice loading against ours, on the same subjects, in one run.

ClinicaDL (PyPI ``clinicadl==2.0.0``) pins ``monai==1.5.0``, which needs torch < 2.7 while headmri pins
torch 2.14, so it cannot share our environment: it lives in its own virtual environment and this script
runs its half there, as a subprocess (the same file with ``--worker``). Create that environment once:

    python3.11 -m venv .venv-clinicadl && .venv-clinicadl/bin/pip install clinicadl==2.0.0
    python bench/bench_clinicadl.py --subjects 4 --repeats 3

The builds run in alternating rounds (ours, ClinicaDL, ours, ...) and the medians are compared, so that a
slow spell of a shared machine does not decide the ratio; loading is timed once on each side.

Both sides do the same work on the same MNI-grid brains (bench_slices.make_brains): canonical RAS,
intensities rescaled to [0, 1] between the 0.5 and 99.5 percentiles inside the brain mask, zero outside
it, the same sagittal slices kept, each slice padded to a square and resized to 224 x 224; loading yields
shuffled batches ready for the encoder: float32 grey (B, 1, 224, 224) in 0..1 with labels (our encoders
fold BiomedCLIP's per-channel normalisation into the patch embedding, headmri/models/grey_input.py).
ClinicaDL's way (its documented API): a ``BidsDataset`` with a ``TransformsHandler`` (image
transforms ToCanonical, RescaleIntensity(masking_method="brain"), Mask, CropOrPad to the square and
Resize to 224, then ``Slice`` extraction), converted once with ``to_tensors(save_transforms=True)`` so the
transforms are not recomputed while loading; then its ``DataLoader`` over the resulting ``TensorDataset``,
whose batches are stacked with ``Batch.get_field("image")``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLINICADL_PYTHON = ROOT / ".venv-clinicadl" / "bin" / "python"


# ---------------------------------------------------------------------------------------------------
# ClinicaDL side (runs inside .venv-clinicadl; imports only ClinicaDL and its dependencies)
# ---------------------------------------------------------------------------------------------------
def clinicadl_worker(args: argparse.Namespace) -> dict:
    import torch
    from clinicadl.data.dataloader import DataLoader
    from clinicadl.data.datasets import BidsDataset
    from clinicadl.io.bids import BidsFileType
    from clinicadl.transforms import TransformsHandler
    from clinicadl.transforms.config import CropOrPadConfig, MaskConfig, RescaleIntensityConfig, ResizeConfig, ToCanonicalConfig
    from clinicadl.transforms.extraction import Slice

    torch.set_num_threads(args.threads)
    shape = tuple(args.shape)
    square = max(shape[1], shape[2])
    transforms = TransformsHandler(
        image_transforms=[
            ToCanonicalConfig(),
            RescaleIntensityConfig(out_min_max=(0, 1), percentiles=(0.5, 99.5), masking_method="brain"),
            MaskConfig(masking_method="brain"),
            # ClinicaDL's default padding_mode (0) fails its own validation; "minimum" pads with the
            # background value, which is 0 after masking.
            CropOrPadConfig(target_shape=(shape[0], square, square), padding_mode="minimum"),
            ResizeConfig(target_shape=(shape[0], args.size, args.size)),
        ],
        extraction=Slice(slice_direction=0, discarded_slices=json.loads(args.dropped)),
    )
    start = time.perf_counter()
    dataset = BidsDataset(args.bids, file_type=BidsFileType(data_type="anat", suffix="T1w"), data=args.data,
                          columns=["diagnosis"], transforms=transforms,
                          masks={"brain": BidsFileType(data_type="anat", suffix="mask", with_entities={"label": "brain"})})
    constructed = time.perf_counter()
    tensors = dataset.to_tensors(conversion_name="bench", save_transforms=True, n_proc=args.n_proc, overwrite=True)
    built = time.perf_counter()
    pt_files = list(Path(args.bids).rglob("*_conv-bench_tensors.pt"))
    subjects = len(pt_files)

    # Same work? Compare a few of ClinicaDL's slices of the first subject with ours (uint8 = value * 255).
    import numpy as np

    ours_slices = np.load(args.ours_npy, mmap_mode="r")
    differences = []
    for index in np.linspace(0, ours_slices.shape[0] - 1, 4).round().astype(int):
        sample = tensors[int(index)]
        theirs = sample.image.tensor.reshape(args.size, args.size).numpy()
        # ours shows a sagittal slice with superior up and anterior right: plane.T[::-1]
        differences.append(float(np.abs(theirs.T[::-1] - ours_slices[index] / 255.0).mean()))

    results = {}
    for workers in [] if args.skip_loading else args.num_workers:
        loader = DataLoader(tensors, batch_size=args.batch_size, shuffle=True, num_workers=workers,
                            pin_memory=False, **({"persistent_workers": True} if workers else {}))
        iterator = iter(loader)
        next(iterator)  # start workers, warm caches
        n, t0 = 0, time.perf_counter()
        for _ in range(args.batches):
            try:
                batch = next(iterator)
            except StopIteration:
                iterator = iter(loader)
                batch = next(iterator)
            image = batch.get_field("image")  # (B, 1, 1, S, S): channel, then the 1-voxel slice axis
            # one float32 grey channel in 0..1, what our loader hands the model too
            x = image.reshape(image.shape[0], 1, args.size, args.size).to(torch.float32)
            y = batch.get_field("diagnosis")
            assert len(y) == image.shape[0]
            n += x.shape[0]
        results[str(workers)] = n / (time.perf_counter() - t0)
        del iterator, loader
    return {
        "subjects": subjects,
        "slices_total": len(tensors),
        "construct_seconds": constructed - start,
        "to_tensors_seconds": built - constructed,
        "build_seconds": built - start,
        "subjects_per_s": subjects / (built - start),
        "bytes_per_subject": sum(p.stat().st_size for p in pt_files) / max(subjects, 1),
        "loading_slices_per_s_by_workers": results,
        "mean_abs_difference_to_ours": float(np.mean(differences)),
    }


# ---------------------------------------------------------------------------------------------------
# Our side and the comparison (runs in the project's environment)
# ---------------------------------------------------------------------------------------------------
def write_bids(brains, folder: Path) -> tuple[Path, Path]:
    bids = folder / "bids"
    rows = ["participant_id\tsession_id\tdiagnosis"]
    for i, (brain, mask) in enumerate(brains):
        anat = bids / f"sub-b{i:03d}" / "ses-M000" / "anat"
        anat.mkdir(parents=True)
        os.symlink(brain, anat / f"sub-b{i:03d}_ses-M000_T1w.nii.gz")
        os.symlink(mask, anat / f"sub-b{i:03d}_ses-M000_label-brain_mask.nii.gz")
        rows.append(f"sub-b{i:03d}\tses-M000\t{i % 2}")
    (bids / "participants.tsv").write_text("\n".join(rows) + "\n")
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "bench", "BIDSVersion": "1.9.0", "DatasetType": "raw"}))
    data = folder / "data.tsv"
    data.write_text("\n".join(rows) + "\n")
    return bids, data


def ours_build(brains, folder: Path, args) -> tuple[float, list[Path]]:
    from headmri.slices import extract_slices

    folder.mkdir()
    paths = []
    start = time.perf_counter()
    for i, (brain, mask) in enumerate(brains):
        npy = folder / f"sub-b{i:03d}_slices.npy"
        extract_slices(brain, mask, npy, folder / f"sub-b{i:03d}_slices.json", size=args.size, subject=f"sub-b{i:03d}")
        paths.append(npy)
    return time.perf_counter() - start, paths


def ours_loading(paths: list[Path], args) -> dict:
    import numpy as np

    from headmri.slices.loader import SliceBatchLoader

    loader = SliceBatchLoader(paths, [i % 2 for i in range(len(paths))], args.batch_size, True, 0)
    iterator = iter(loader)
    next(iterator)
    n, t0 = 0, time.perf_counter()
    for _ in range(args.batches):
        try:
            x, y, _ = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            x, y, _ = next(iterator)
        n += x.shape[0]
    return {"subjects": len(paths), "slices_total": loader.n_items,
            "bytes_per_subject": float(np.mean([p.stat().st_size for p in paths])),
            "loading_slices_per_s": n / (time.perf_counter() - t0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=20, help="batches timed when loading (ours)")
    parser.add_argument("--clinicadl-batches", type=int, default=3, help="batches timed when loading (ClinicaDL)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-proc", type=int, default=1, help="ClinicaDL to_tensors processes")
    parser.add_argument("--num-workers", type=int, nargs="+", default=[0, 2], help="ClinicaDL DataLoader workers to try")
    parser.add_argument("--repeats", type=int, default=3, help="alternating build rounds (ours, then ClinicaDL)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--clinicadl-python", type=Path, default=CLINICADL_PYTHON)
    # worker-only arguments
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bids", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--dropped", help=argparse.SUPPRESS)
    parser.add_argument("--shape", type=int, nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--ours-npy", help=argparse.SUPPRESS)
    parser.add_argument("--skip-loading", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(clinicadl_worker(args)))
        return

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_slices import make_brains

    if not args.clinicadl_python.exists():
        sys.exit(f"ClinicaDL's environment is missing ({args.clinicadl_python}); create it as the docstring says")
    torch.set_num_threads(args.threads)
    from headmri.slices import SliceGeometry

    ours_seconds, their_runs = [], []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        folder = Path(tmp)
        brains = make_brains(folder, args.subjects)
        bids, data = write_bids(brains, folder)
        import nibabel as nib

        # The two builds alternate, so that a slow spell of the machine falls on both sides alike; ClinicaDL's
        # loading, which takes minutes, is timed in the first round only.
        for repeat in range(args.repeats):
            seconds, paths = ours_build(brains, folder / f"ours{repeat}", args)
            ours_seconds.append(seconds)
            dropped = list(SliceGeometry.from_json(paths[0].with_suffix(".json")).dropped_indices)
            command = [str(args.clinicadl_python), __file__, "--worker", "--bids", str(bids), "--data", str(data),
                       "--dropped", json.dumps(dropped), "--ours-npy", str(paths[0]),
                       "--shape", *map(str, nib.load(brains[0][0]).shape),
                       "--size", str(args.size), "--batch-size", str(args.batch_size), "--batches", str(args.clinicadl_batches),
                       "--threads", str(args.threads), "--n-proc", str(args.n_proc),
                       "--num-workers", *map(str, args.num_workers), *(["--skip-loading"] if repeat else [])]
            done = subprocess.run(command, capture_output=True, text=True, cwd=tmp)
            if done.returncode != 0:
                sys.exit(f"the ClinicaDL worker failed:\n{done.stderr[-4000:]}")
            their_runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        ours_result = ours_loading(paths, args)
    theirs = their_runs[0]
    ours_rates = [args.subjects / s for s in ours_seconds]
    their_rates = [run["subjects_per_s"] for run in their_runs]
    ours_result.update(build_subjects_per_s_by_round=ours_rates, subjects_per_s=statistics.median(ours_rates))
    theirs.update(build_subjects_per_s_by_round=their_rates, subjects_per_s=statistics.median(their_rates))
    best_theirs = max(theirs["loading_slices_per_s_by_workers"].values())
    result = {"ours": ours_result, "clinicadl": theirs,
              "build_speedup": ours_result["subjects_per_s"] / theirs["subjects_per_s"],
              "build_speedup_by_round": [o / t for o, t in zip(ours_rates, their_rates)],
              "loading_speedup": ours_result["loading_slices_per_s"] / best_theirs,
              "disk_ratio": theirs["bytes_per_subject"] / ours_result["bytes_per_subject"]}
    print(f"subjects: {ours_result['subjects']}, slices: ours {ours_result['slices_total']}, ClinicaDL {theirs['slices_total']}")
    print(f"same work: mean |ClinicaDL - ours| over sampled slices = {theirs['mean_abs_difference_to_ours']:.4f} (intensities 0..1)")
    print(f"build:   ours {ours_result['subjects_per_s']:.3f} subjects/s, ClinicaDL {theirs['subjects_per_s']:.3f} subjects/s "
          f"(medians of {args.repeats} alternating rounds) -> {result['build_speedup']:.1f}x; by round: "
          + ", ".join(f"{o:.2f} / {t:.2f} = {o / t:.1f}x" for o, t in zip(ours_rates, their_rates)))
    print(f"disk:    ours {ours_result['bytes_per_subject'] / 2**20:.1f} MiB/subject, ClinicaDL "
          f"{theirs['bytes_per_subject'] / 2**20:.1f} MiB/subject -> {result['disk_ratio']:.1f}x smaller")
    print(f"loading: ours {ours_result['loading_slices_per_s']:,.0f} slices/s, ClinicaDL "
          + ", ".join(f"{v:,.0f} slices/s ({k} workers)" for k, v in theirs["loading_slices_per_s_by_workers"].items())
          + f" -> {result['loading_speedup']:.1f}x")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))

if __name__ == "__main__":
    main()
