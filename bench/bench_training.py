"""Training throughput of the slice encoders: images per second for forward + backward + AdamW step.

Measures BiomedCLIP's architecture (timm ViT-B/16 at 224, random weights: the speed does not depend on
the weights) and the demo's tiny ViT, on the CPU and, when CUDA is available, on the GPU in bf16
autocast with fused AdamW; timm's attention runs through ``F.scaled_dot_product_attention`` (flash
attention on the GPU). ``--compile`` adds a ``torch.compile`` run on the GPU. Inputs are synthetic
tensors already on the device: loading is measured by the slice-loader benchmark.

    python bench/bench_training.py                      # CPU (and GPU when present), default sizes
    python bench/bench_training.py --device cuda --compile --gpu-batch 256

Prints one line per measurement and a JSON list at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from headmri.models import build_architecture  # noqa: E402
from headmri.training.loop import autocast, make_optimizer  # noqa: E402


def measure(encoder: str, device: torch.device, *, batch: int, steps: int, warmup: int, compile_model: bool = False,
            backend: str = "inductor") -> dict:
    torch.manual_seed(0)
    model = build_architecture(encoder, ("HC", "migraine")).to(device)
    model.train()
    optimizer = make_optimizer(model, lr=1e-5, weight_decay=0.05, device=device)
    step_model = torch.compile(model, backend=backend) if compile_model else model
    size = model.input_size
    x = torch.rand(batch, 1, size, size, device=device)  # grey slices, as the slice loader gives them
    y = torch.randint(0, 2, (batch,), device=device)

    def step() -> None:
        with autocast(device):
            logits = step_model(x)
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    first = time.perf_counter()
    step()  # a compiled model compiles here
    sync()
    first_step_s = time.perf_counter() - first
    for _ in range(warmup - 1):
        step()
    sync()
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    sync()
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    result = {
        "encoder": encoder, "device": device.type, "input": size, "batch": batch, "steps": steps,
        "precision": "bf16 autocast" if device.type == "cuda" else "fp32", "compiled": compile_model,
        "images_per_s": round(batch * steps / seconds, 1), "seconds": round(seconds, 2),
        "first_step_s": round(first_step_s, 2),
    }
    if device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(device)
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 1)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        # CPU time is steadier than wall time on a shared machine: with the cores to itself the run
        # would reach about threads / cpu_seconds_per_image images per second.
        result["threads"] = torch.get_num_threads()
        result["cpu_seconds_per_image"] = round(cpu_seconds / (batch * steps), 4)
        result["images_per_s_if_cores_free"] = round(result["threads"] * batch * steps / cpu_seconds, 1)
    return result


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto: the CPU, and the GPU too when CUDA is available")
    parser.add_argument("--encoders", nargs="+", default=["biomedclip", "vit_tiny_demo"])
    parser.add_argument("--cpu-batch", type=int, default=16)
    parser.add_argument("--cpu-steps", type=int, default=3)
    parser.add_argument("--gpu-batch", type=int, default=256)
    parser.add_argument("--gpu-steps", type=int, default=30)
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile on the GPU")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}",
          flush=True)
    results = []
    devices = []
    if args.device in ("auto", "cpu"):
        devices.append(torch.device("cpu"))
    if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            parser.error("--device cuda, but CUDA is not available")
        torch.backends.cuda.matmul.allow_tf32 = True
        devices.append(torch.device("cuda"))
    for device in devices:
        for encoder in args.encoders:
            runs = [False, True] if device.type == "cuda" and args.compile else [False]
            for compiled in runs:
                if device.type == "cuda":
                    result = measure(encoder, device, batch=args.gpu_batch, steps=args.gpu_steps, warmup=5 if not compiled else 10,
                                     compile_model=compiled)
                else:
                    result = measure(encoder, device, batch=args.cpu_batch, steps=args.cpu_steps, warmup=1)
                results.append(result)
                print(f"{encoder:>14} {device.type:>4} {result['precision']:>13} batch {result['batch']:>4}"
                      f"{' compiled' if compiled else ''}: {result['images_per_s']:>8.1f} img/s"
                      + (f" ({result['images_per_s_if_cores_free']} img/s from CPU time)" if device.type == "cpu" else ""),
                      flush=True)
    print(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
