"""Benchmark: Grad-CAM throughput in subjects/s, for ViT-B/16 at 224 (BiomedCLIP's trunk) and the tiny demo ViT.

A "subject" is ``--slices`` sagittal slices (150 by default, about what a 1 mm MNI brain keeps), random
weights (the speed does not depend on them). Three measurements per model and device:

- ``raw``: headmri's Grad-CAM (pytorch-grad-cam's GradCAM with the scaling dropped, every parameter
  frozen and the target layer's output made the only leaf, so nothing before the last block is kept
  for the backward pass), upsampled to the slice size;
- ``stock``: pytorch-grad-cam's GradCAM as shipped (full backward through the network, min-max scaled
  maps), for comparison;
- ``subject``: the whole per-subject path of the explain job after the network: maps -> MNI volume with
  SliceGeometry.to_volume -> regional maximum over a 182 x 218 x 182 parcellation (CPU work).

    python bench/bench_gradcam.py --device cuda --subjects 4       # on a GPU machine (unchanged code)
    # CPU, one model and measure per process (per-measure peak memory; ViT-B's full backward needs ~9 GB at batch 32)
    python bench/bench_gradcam.py --device cpu --models vit_b16_224 --measures raw --batch-size 8 --skip-subject

Prints one line per measurement; ``--json`` writes them to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from headmri.explain.gradcam import resolve_module, vit_token_grid
from headmri.explain.maps import slice_maps
from headmri.explain.regions import regional_values
from headmri.models import build_architecture
from headmri.slices.geometry import SliceGeometry

MODELS = {"vit_b16_224": "biomedclip", "vit_tiny_demo": "vit_tiny_demo"}
GRID = (182, 218, 182)
LAYER = "trunk.blocks[-1].norm1"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def subject_inputs(size: int, n_slices: int, device: torch.device, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n_slices, 1, size, size, generator=generator).to(device)  # grey, as the loader gives


def time_raw(model, inputs, batch_size, device) -> float:
    _sync(device)
    start = time.perf_counter()
    slice_maps(model, inputs, method="gradcam", target=1, target_layer=LAYER, batch_size=batch_size)
    _sync(device)
    return time.perf_counter() - start


def time_stock(model, inputs, batch_size, device) -> float:
    layer = resolve_module(model, LAYER)
    reshape = vit_token_grid(1, model.patch_grid)
    _sync(device)
    start = time.perf_counter()
    with GradCAM(model, [layer], reshape_transform=reshape) as cam:
        for i in range(0, len(inputs), batch_size):
            chunk = inputs[i : i + batch_size]
            cam(chunk, [ClassifierOutputTarget(1)] * len(chunk))
    _sync(device)
    return time.perf_counter() - start


def time_subject_path(size: int, n_slices: int, seed: int) -> float:
    """Maps -> MNI volume -> regional max, the CPU part after the network (same for every model)."""
    rng = np.random.default_rng(seed)
    affine = np.array([[1.0, 0, 0, -91], [0, 1, 0, -126], [0, 0, 1, -72], [0, 0, 0, 1]])
    first = (GRID[0] - n_slices) // 2
    geometry = SliceGeometry.create(axis=0, size=size, source_shape=GRID, source_affine=affine,
                                    kept_indices=range(first, first + n_slices))
    labels = np.zeros(GRID, np.int32)
    codes = np.concatenate([np.arange(1001, 1036), np.arange(2001, 2036), np.arange(3001, 3036), np.arange(4001, 4036)])
    labels[20:162, 20:198, 20:162] = rng.choice(codes, size=(142, 178, 142))
    maps = rng.random((n_slices, size, size), dtype=np.float32)
    start = time.perf_counter()
    volume = geometry.to_volume(maps)
    regional_values(volume, labels, codes, "max")
    return time.perf_counter() - start


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: peak allocated since the last reset; CPU: the process's peak resident set (so far, all
    measurements: run one model and measure per process, --models/--measures, for per-measure peaks)."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run(args) -> list[dict]:
    devices = {"cpu": ["cpu"], "cuda": ["cuda"], "all": ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])}[args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    timers = {"raw": time_raw, "stock": time_stock}
    rows = []
    for device_name in devices:
        device = torch.device(device_name)
        batch = args.batch_size or (128 if device.type == "cuda" else 32)
        for label in args.models:
            model = build_architecture(MODELS[label], ("HC", "migraine")).to(device).eval()
            size = model.input_size
            warm = subject_inputs(size, min(batch, args.slices), device, seed=99)
            timers[args.measures[0]](model, warm, batch, device)  # warm-up: allocator, kernels, thread pools
            for kind in args.measures:
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                seconds = sum(timers[kind](model, subject_inputs(size, args.slices, device, seed=s), batch, device)
                              for s in range(args.subjects))
                rows.append({"model": label, "device": device_name, "measure": kind, "batch": batch,
                             "slices": args.slices, "subjects": args.subjects, "seconds": round(seconds, 3),
                             "subjects_per_s": round(args.subjects / seconds, 4),
                             "slices_per_s": round(args.subjects * args.slices / seconds, 1),
                             "peak_memory_mb": peak_memory_mb(device)})
                print(json.dumps(rows[-1]), flush=True)
            del model
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if args.skip_subject:
        return rows
    seconds = sum(time_subject_path(224, args.slices, seed=s) for s in range(max(1, args.subjects)))
    rows.append({"model": "any", "device": "cpu", "measure": "subject", "slices": args.slices,
                 "subjects": max(1, args.subjects), "seconds": round(seconds, 3),
                 "subjects_per_s": round(max(1, args.subjects) / seconds, 4)})
    print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    parser.add_argument("--subjects", type=int, default=1)
    parser.add_argument("--slices", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--models", nargs="+", choices=tuple(MODELS), default=list(MODELS))
    parser.add_argument("--measures", nargs="+", choices=("raw", "stock"), default=["raw", "stock"],
                        help="raw: headmri's Grad-CAM; stock: pytorch-grad-cam as shipped")
    parser.add_argument("--skip-subject", action="store_true", help="skip the maps -> volume -> regions measurement")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
                      "cpus": os.cpu_count(), "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}))
    rows = run(args)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
