"""Benchmark: slice cache build (subjects/s, bytes per subject) and loading into ready batches (slices/s).

Brains are MNI-grid (182 x 218 x 182) copies of the embedded MNI152NLin6Asym template, skull-stripped with
its brain mask and made distinct per subject (global gain, smooth bias field, noise), so the numbers are
those of real-sized inputs. Prints one line per measurement and, with --json, writes them to a file.

    python bench/bench_slices.py --subjects 8 --threads 2

Loading is measured three ways: the contract path (float32 grey (B, 1, 224, 224) in 0..1 on the CPU, what
the encoder takes: it folds its normalisation into the patch embedding), the gather stage alone (uint8
(B, 224, 224) read from the memory-mapped cache: what crosses to a GPU when SliceBatchLoader(device="cuda")
converts there), and the machine's memory-write ceiling for the output (filling a preallocated float32
(B, 1, 224, 224) tensor), which bounds any CPU loader.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from headmri.slices import extract_slices
from headmri.slices.loader import SliceBatchLoader
from headmri.templates import embedded_template


def make_brains(folder: Path, n: int, seed: int = 0) -> list[tuple[Path, Path]]:
    template = embedded_template()
    head = nib.load(template.head)
    mask_img = nib.load(template.brain_mask)
    mask = np.asarray(mask_img.dataobj) > 0.5
    base = np.asarray(head.dataobj, dtype=np.float32) * mask
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.linspace(-1, 1, s, dtype=np.float32) for s in base.shape], indexing="ij")
    out = []
    for i in range(n):
        bias = 1 + 0.1 * sum(rng.uniform(-1, 1) * g for g in grid)
        brain = base * rng.uniform(0.8, 1.2) * bias + rng.normal(0, 20, base.shape).astype(np.float32) * mask
        b, m = folder / f"sub-b{i:03d}_brain.nii.gz", folder / f"sub-b{i:03d}_mask.nii.gz"
        nib.save(nib.Nifti1Image(brain.astype(np.float32), head.affine), b)
        nib.save(nib.Nifti1Image(mask.astype(np.uint8), head.affine), m)
        out.append((b, m))
    return out


def bench_build(brains, folder: Path, size: int, dtype: str) -> tuple[list[Path], dict]:
    paths = []
    start = time.perf_counter()
    for i, (b, m) in enumerate(brains):
        npy = folder / f"sub-b{i:03d}_slices.npy"
        extract_slices(b, m, npy, folder / f"sub-b{i:03d}_slices.json", size=size, dtype=dtype, subject=f"sub-b{i:03d}")
        paths.append(npy)
    seconds = time.perf_counter() - start
    sizes = [p.stat().st_size for p in paths]
    slices = [np.load(p, mmap_mode="r").shape[0] for p in paths]
    return paths, {"subjects": len(paths), "seconds": seconds, "subjects_per_s": len(paths) / seconds,
                   "bytes_per_subject": float(np.mean(sizes)), "slices_per_subject": float(np.mean(slices))}


def bench_loading(paths, batch_size: int, epochs: int, repeat: int) -> dict:
    # The cache is listed `repeat` times so an epoch is long enough to time; it stays in the page cache,
    # as a real cache of a few hundred subjects does on a training machine.
    listed = [p for p in paths for _ in range(repeat)]
    labels = [i % 2 for i in range(len(listed))]
    loader = SliceBatchLoader(listed, labels, batch_size, True, 0)
    for _ in loader:  # warm the page cache and the allocator
        pass
    n, start = 0, time.perf_counter()
    for _ in range(epochs):
        for x, _y, _s in loader:
            n += x.shape[0]
    ready = n / (time.perf_counter() - start)
    subject, slice_ = loader._epoch_items(0)
    n, start = 0, time.perf_counter()
    for _ in range(epochs):
        for i in range(0, subject.size, batch_size):
            raw = loader._gather(subject[i:i + batch_size], slice_[i:i + batch_size])
            n += raw.shape[0]
    gather = n / (time.perf_counter() - start)
    size = loader.slice_shape[0]
    buffer = torch.empty(batch_size, 1, size, size)  # what a ready batch is
    buffer.fill_(0)
    reps, start = 50, time.perf_counter()
    for _ in range(reps):
        buffer.fill_(1.0)
    ceiling = reps * batch_size / (time.perf_counter() - start)
    return {"slices_per_epoch": int(loader.n_items), "batch_size": batch_size,
            "ready_float32_slices_per_s": ready, "uint8_gather_slices_per_s": gather,
            "memory_write_ceiling_slices_per_s": ceiling}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--dtype", default="uint8", choices=["uint8", "float16"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=4, help="list each subject this many times when loading")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        folder = Path(tmp)
        brains = make_brains(folder, args.subjects)
        paths, build = bench_build(brains, folder, args.size, args.dtype)
        loading = bench_loading(paths, args.batch_size, args.epochs, args.repeat)
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {args.threads}",
              "build": build, "loading": loading}
    print(f"build:   {build['subjects_per_s']:.2f} subjects/s ({build['seconds']:.1f} s for {build['subjects']}), "
          f"{build['bytes_per_subject'] / 2**20:.2f} MiB and {build['slices_per_subject']:.0f} slices per subject")
    print(f"loading: {loading['ready_float32_slices_per_s']:,.0f} slices/s ready float32 (B,1,{args.size},{args.size}); "
          f"{loading['uint8_gather_slices_per_s']:,.0f} slices/s uint8 gather; "
          f"memory-write ceiling {loading['memory_write_ceiling_slices_per_s']:,.0f} slices/s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
