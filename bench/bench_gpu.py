"""The paper's experiment at the GPU's speed (issue 17), in one command: a synthetic cohort in the slice
format, then the bare training step (eager and ``torch.compile``), the real ``train_fold`` job (steady and
whole rates, eager and compiled, with the GPU's utilisation sampled while it runs), the cost of a resume
state on the training thread, and the ``explain_fold`` job's rate against the Grad-CAM maps' own rate.
One JSON file holds everything (docs/benchmarks.md, "GPU run").

    python bench/bench_gpu.py                       # the GPU set-up: BiomedCLIP's ViT-B/16, 224 px (< 6 min on an H200)
    python bench/bench_gpu.py --tiny --device cpu   # the same steps at toy sizes on the CPU (tests/test_bench_gpu.py)

The cohort: one synthetic brain cut by the real slice extractor (MNI grid, 1 mm), copied to every subject
with noise, and a bright block in the patients' slices; one block parcellation shared by all. BiomedCLIP's
architecture comes from a local open_clip-format checkpoint with random weights (the speed does not
depend on the weights, and a GPU node has no network), written into the work folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_training import measure  # noqa: E402

from headmri.atomic import write_tsv  # noqa: E402
from headmri.config import OBJECTIVES, TrainingConfig  # noqa: E402
from headmri.explain.gradcam import GradCAMMethod  # noqa: E402
from headmri.explain.job import (  # noqa: E402
    ExplainSettings,
    FoldInputs,
    FoldKey,
    FoldOutputs,
    SubjectFiles,
    explain_fold,
)
from headmri.explain.regions import OPTIONAL_CODES  # noqa: E402
from headmri.labels import lut  # noqa: E402
from headmri.models import build_classifier  # noqa: E402
from headmri.slices import extract_slices  # noqa: E402
from headmri.slices.loader import SliceBatchLoader  # noqa: E402
from headmri.splits import make_splits  # noqa: E402
from headmri.training import (  # noqa: E402
    EncoderChoice,
    FoldJob,
    FoldSettings,
    load_trained,
    save_trained,
    train_fold,
)
from headmri.training.checkpoint import CheckpointWriter, save_torch  # noqa: E402
from headmri.training.loop import make_optimizer  # noqa: E402

CLASSES = ("HC", "migraine")
MNI_SHAPE = (182, 218, 182)


@dataclass(frozen=True)
class Sizes:
    encoder: str
    slice_size: int
    grid: tuple[int, int, int]
    per_class: int  # subjects per class
    folds: int
    held_out: int  # validation and test subjects per class
    batch: int  # the real job's batch
    epochs: int  # of each real job (the first one pays for start-up and compilation)
    step_batch: int  # the bare step's batch
    step_steps: int
    regions: int


GPU = Sizes("biomedclip", 224, MNI_SHAPE, per_class=48, folds=5, held_out=6, batch=128, epochs=5, step_batch=256,
            step_steps=30, regions=32)
TINY = Sizes("vit_tiny_demo", 112, (36, 44, 36), per_class=4, folds=2, held_out=1, batch=16, epochs=2, step_batch=8,
             step_steps=2, regions=6)
# the CPU demo's encoder on the real MNI grid: the per-region work (back to 182 x 218 x 182, statistics per
# region) weighs against the maps as it does on a GPU with the ViT, at a size a CPU explains in a minute
CPU = Sizes("cnn_demo", 64, MNI_SHAPE, per_class=8, folds=2, held_out=1, batch=64, epochs=2, step_batch=32,
            step_steps=5, regions=32)
SIZES = {"gpu": GPU, "tiny": TINY, "cpu": CPU}
STEPS = ("step", "job", "checkpoint", "explain")


def synthetic_cohort(root: Path, sizes: Sizes, *, seed: int = 0) -> dict:
    """Slices, geometry and one parcellation for ``2 x per_class`` subjects, and the split table."""
    root.mkdir(parents=True, exist_ok=True)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = -(np.asarray(sizes.grid) - 1) / 2.0
    ijk = np.indices(sizes.grid, dtype=np.float32)
    radii = np.asarray(sizes.grid, dtype=np.float32)[:, None, None, None] * 0.4
    centre = (np.asarray(sizes.grid, dtype=np.float32)[:, None, None, None] - 1) / 2.0
    mask = (((ijk - centre) / radii) ** 2).sum(axis=0) <= 1.0
    rng = np.random.default_rng(seed)
    brain = np.where(mask, 600.0 + rng.normal(0.0, 30.0, sizes.grid), 0.0).astype(np.float32)
    nib.save(nib.Nifti1Image(brain, affine), root / "brain.nii.gz")
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), root / "mask.nii.gz")
    extract_slices(root / "brain.nii.gz", root / "mask.nii.gz", root / "template_slices.npy",
                   root / "template_slices.json", size=sizes.slice_size, subject="template")
    dseg = root / "dseg.nii.gz"
    nib.save(nib.Nifti1Image(_block_labels(mask, sizes.regions), affine), dseg)
    template = np.load(root / "template_slices.npy")
    block = (slice(None), slice(template.shape[1] // 3, template.shape[1] // 2), slice(template.shape[2] // 3, template.shape[2] // 2))
    rows = []
    for group in CLASSES:
        for index in range(1, sizes.per_class + 1):
            pid = f"sub-{group.lower()}{index:03d}"
            slices = np.clip(template.astype(np.int16) + rng.integers(-12, 13, template.shape), 0, 255)
            if group != CLASSES[0]:
                slices[block] = np.clip(slices[block] + 40, 0, 255)
            np.save(root / f"{pid}_slices.npy", slices.astype(np.uint8))
            shutil.copyfile(root / "template_slices.json", root / f"{pid}_slices.json")
            rows.append({"participant_id": pid, "group": group})
    split = make_splits(pd.DataFrame(rows), list(CLASSES), folds=sizes.folds, val_per_class=sizes.held_out,
                        test_per_class=sizes.held_out, seed=13)
    write_tsv(split, root / "split.tsv")
    return {"root": root, "split": root / "split.tsv", "dseg": dseg, "slices_per_subject": int(template.shape[0]),
            "subjects": [r["participant_id"] for r in rows], "split_table": split}


def _block_labels(mask: np.ndarray, regions: int) -> np.ndarray:
    """``regions`` scored FreeSurfer codes painted on the brain mask: two halves along the first axis, each
    cut into ``regions // 2`` slabs along the second."""
    from headmri.explain.regions import scored_codes

    table = lut()
    codes = [c for c in scored_codes(table.index) if c not in OPTIONAL_CODES][:regions]
    per_half = max(1, len(codes) // 2)
    i, j = np.indices(mask.shape[:2])
    slab = (i * 2 // mask.shape[0]) * per_half + j * per_half // mask.shape[1]
    labels = np.asarray(codes, dtype=np.int32)[np.minimum(slab, len(codes) - 1)]
    return np.where(mask, labels[..., None], 0).astype(np.int32)


def open_clip_checkpoint(folder: Path) -> Path:
    """BiomedCLIP's trunk with random weights, saved the way open_clip saves a model."""
    from headmri.models.biomedclip import build_trunk

    torch.manual_seed(0)
    state = {f"visual.trunk.{key}": value for key, value in build_trunk().state_dict().items()}
    path = folder / "open_clip_pytorch_model.bin"
    torch.save(state, path)
    return path


class UtilisationSampler:
    """The GPU's utilisation (percent of time a kernel ran) sampled every ``every`` s while in use."""

    def __init__(self, device: torch.device, every: float = 0.2):
        self.device, self.every, self.samples = device, every, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> float | None:
        try:
            return float(torch.cuda.utilization(self.device))
        except Exception:  # no pynvml: ask nvidia-smi
            done = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                   "-i", str(self.device.index or 0)], capture_output=True, text=True)
            return float(done.stdout.strip()) if done.returncode == 0 and done.stdout.strip() else None

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            value = self._read()
            if value is not None:
                self.samples.append(value)

    @contextmanager
    def running(self):
        if self.device.type == "cuda":
            self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            if self._thread.is_alive():
                self._thread.join()

    def mean(self) -> float | None:
        return round(statistics.fmean(self.samples), 1) if self.samples else None


def bench_steps(sizes: Sizes, device: torch.device, backend: str) -> list[dict]:
    """The bare training step (bench/bench_training.py's), eager and compiled."""
    runs = []
    for compiled in (False, True):
        result = measure(sizes.encoder, device, batch=sizes.step_batch, steps=sizes.step_steps,
                         warmup=3 if compiled else 2, compile_model=compiled, backend=backend)
        runs.append(result)
        print(f"bench step{' compiled' if compiled else ''}: {result['images_per_s']:,.0f} img/s "
              f"(first step {result['first_step_s']} s)", flush=True)
    return runs


def slices_per_epoch(training: TrainingConfig, train: pd.DataFrame, root: Path, slices_per_subject: int) -> int:
    """Slices one training epoch feeds the model: every training slice (classes balanced: no oversampling),
    or with ``objective: mil`` the steps of the job's own loader times each step's control slices and bags."""
    if training.objective != "mil":
        return len(train) * slices_per_subject
    from headmri.training.mil import MilBatchLoader

    loader = MilBatchLoader([root / f"{pid}_slices.npy" for pid in train["participant_id"]],
                            (train["group"] != CLASSES[0]).astype(int).tolist(), controls_per_step=training.batch_size,
                            bags_per_step=training.mil.bags_per_step, bag_slices=training.mil.bag_slices, seed=0)
    return len(loader) * loader.batch_size


def real_job(cohort: dict, sizes: Sizes, device: torch.device, work: Path, *, compiled: bool | str,
             checkpoint: Path | None, threads: int, objective: str = "slices") -> dict:
    """``train_fold`` on fold 1 (``compiled``: False, or a torch.compile backend) with the training
    ``objective``: wall time, the steady rate of the epochs after the first, GPU utilisation."""
    out = work / f"train-{objective}-{'compiled' if compiled else 'eager'}"
    training = TrainingConfig(epochs=sizes.epochs, batch_size=sizes.batch, lr=4e-5, warmup_epochs=1,
                              patience=sizes.epochs, max_slices_per_subject=None, objective=objective)
    split = cohort["split_table"]
    fold = split[split["fold"] == 1]
    epoch_slices = slices_per_epoch(training, fold[fold["split"] == "train"], cohort["root"], cohort["slices_per_subject"])
    sampler = UtilisationSampler(device)
    started = time.perf_counter()
    with sampler.running():
        train_fold(cohort["split"], out, FoldJob("bench", CLASSES, 1, sizes.encoder.replace("_", "")),
                   EncoderChoice(sizes.encoder, checkpoint), training, cohort["root"],
                   FoldSettings(slice_size=sizes.slice_size, threads=threads, device=device.type, progress=False,
                                compile=compiled))
    whole = time.perf_counter() - started
    seconds = pd.read_csv(out / "history.tsv", sep="\t")["seconds"].tolist()
    steady = statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
    result = {
        "objective": objective, "compiled": bool(compiled), "compile_backend": compiled or None, "epochs": sizes.epochs,
        "batch": sizes.batch, "train_slices_per_epoch": epoch_slices,
        "epoch_seconds": seconds, "whole_seconds": round(whole, 2),
        "steady_slices_per_s": round(epoch_slices / steady, 1),
        "whole_slices_per_s": round(sizes.epochs * epoch_slices / whole, 1),
        "gpu_utilisation_percent": sampler.mean(), "model": str(out / "model.pt"),
    }
    print(f"real job ({objective}){' compiled' if compiled else ''}: steady {result['steady_slices_per_s']:,.0f} slices/s, whole "
          f"{result['whole_slices_per_s']:,.0f} slices/s ({whole:.1f} s), GPU busy {result['gpu_utilisation_percent']} %",
          flush=True)
    return result


def checkpoint_cost(model_path: Path, device: torch.device, work: Path) -> dict:
    """A resume state (model and AdamW after one step) written the former way, on the training thread,
    and the job's way: a host copy on the training thread, the writing in the background."""
    model, _ = load_trained(model_path, device=device)
    model.train()
    optimizer = make_optimizer(model, lr=1e-5, weight_decay=0.05, device=device)
    size = model.input_size
    model(torch.rand(2, 1, size, size, device=device)).sum().backward()
    optimizer.step()
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
    started = time.perf_counter()
    save_torch(state, work / "former.pt")
    former = time.perf_counter() - started
    writer = CheckpointWriter()
    writer.save(state, work / "background.pt")
    writer.close()
    result = {"bytes": (work / "background.pt").stat().st_size, "former_training_thread_s": round(former, 3),
              "training_thread_s": round(writer.copy_seconds, 3), "background_write_s": round(writer.write_seconds, 3)}
    print(f"resume state: {result['bytes'] / 2**30:.2f} GiB, {former:.2f} s on the training thread before, "
          f"{writer.copy_seconds:.2f} s now (+ {writer.write_seconds:.2f} s in the background)", flush=True)
    return result


def explanation_rate(cohort: dict, model_path: Path, device: torch.device, work: Path, batch: int, threads: int) -> dict:
    """``explain_fold`` on fold 1's patients (all of them), with each subject's regional part on a background
    thread beside the next subject's maps (the job's way) and one after the other (``overlap`` off, as before
    issue 17), against Grad-CAM's maps alone on the same slices. Both ways must give the same regions.tsv.
    torch runs ``threads`` CPU threads, as the explain job does (``compute.threads_per_job``)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _explanation_rate(cohort, model_path, device, work, batch)
    finally:
        torch.set_num_threads(previous)


def _explanation_rate(cohort: dict, model_path: Path, device: torch.device, work: Path, batch: int) -> dict:
    split = cohort["split_table"]
    patients = split[(split["fold"] == 1) & (split["group"] == CLASSES[1])]["participant_id"].tolist()
    root = cohort["root"]
    files = {pid: SubjectFiles(root / f"{pid}_slices.npy", root / f"{pid}_slices.json", cohort["dseg"]) for pid in patients}
    maps = len(patients) * cohort["slices_per_subject"]
    seconds = {}
    for overlap in (False, True):
        out = work / ("explain" if overlap else "explain-serial")
        started = time.perf_counter()
        explain_fold(FoldInputs(model_path, cohort["split"], files), FoldKey("bench", CLASSES, 1),
                     ExplainSettings(method="gradcam", patients="all", batch_size=batch, overlap=overlap),
                     FoldOutputs(out / "regions.tsv", out / "mean_map.nii.gz", out / "explain.json"), device.type)
        seconds[overlap] = time.perf_counter() - started
    same = (work / "explain" / "regions.tsv").read_bytes() == (work / "explain-serial" / "regions.tsv").read_bytes()
    alone = maps_alone(model_path, device, [files[pid].slices for pid in patients], batch)
    result = {"maps": maps, "job_seconds": round(seconds[True], 2), "job_maps_per_s": round(maps / seconds[True], 1),
              "serial_job_seconds": round(seconds[False], 2), "serial_job_maps_per_s": round(maps / seconds[False], 1),
              "maps_alone_per_s": round(maps / alone, 1), "job_to_maps_ratio": round(alone / seconds[True], 3),
              "serial_to_maps_ratio": round(alone / seconds[False], 3), "same_regions": same}
    print(f"explanations: {result['job_maps_per_s']:,.0f} maps/s end to end ({result['serial_job_maps_per_s']:,.0f} "
          f"without overlap), {result['maps_alone_per_s']:,.0f} maps/s for the maps alone; same regions: {same}",
          flush=True)
    return result


def maps_alone(model_path: Path, device: torch.device, slice_files: list[Path], batch: int) -> float:
    """Seconds Grad-CAM takes for the maps of ``slice_files``, nothing else."""
    model, _ = load_trained(model_path, device=device)
    method = GradCAMMethod(model, batch_size=batch, target_layer=model.target_layer_name)
    started = time.perf_counter()
    for path in slice_files:
        loader = SliceBatchLoader([path], [0], batch_size=1, shuffle=False, seed=0, device=device)
        method.slice_maps(loader.to_grey(torch.from_numpy(np.array(loader.arrays[0]))), 1)
    return time.perf_counter() - started  # slice_maps returns host arrays: the device has finished


def untrained_model(sizes: Sizes, work: Path, checkpoint: Path | None) -> Path:
    """An untrained model of the encoder, for explaining without a training run (the speed does not
    depend on the weights)."""
    torch.manual_seed(0)
    path = work / "untrained" / "model.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    model = build_classifier(sizes.encoder, len(CLASSES), checkpoint=checkpoint, classes=CLASSES)
    save_trained(model, path, task="bench", fold=1)
    return path


def run(sizes: Sizes, device: torch.device, work: Path, *, backend: str, threads: int,
        steps: tuple[str, ...] = STEPS, objective: str = "slices") -> dict:
    started = time.perf_counter()
    cohort = synthetic_cohort(work / "cohort", sizes)
    checkpoint = open_clip_checkpoint(work) if sizes.encoder == "biomedclip" else None
    print(f"cohort: {len(cohort['subjects'])} subjects x {cohort['slices_per_subject']} slices of "
          f"{sizes.slice_size} px ({time.perf_counter() - started:.1f} s)", flush=True)
    result = {}
    if "step" in steps:
        result["bench_step"] = bench_steps(sizes, device, backend)
    if "job" in steps:
        result["real_job"] = [real_job(cohort, sizes, device, work, compiled=compiled, checkpoint=checkpoint,
                                       threads=threads, objective=objective) for compiled in (False, backend)]
    model_path = Path(result["real_job"][0]["model"]) if "job" in steps else untrained_model(sizes, work, checkpoint)
    if "checkpoint" in steps:
        result["checkpoint"] = checkpoint_cost(model_path, device, work)
    if "explain" in steps:
        result["explanations"] = explanation_rate(cohort, model_path, device, work, sizes.batch, threads)
    return {**result, "seconds": round(time.perf_counter() - started, 1)}


def environment(device: torch.device, sizes: Sizes) -> dict:
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": torch.__version__,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "cpu_threads": torch.get_num_threads(), "sizes": asdict(sizes)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--tiny", action="store_true", help="toy sizes (the small ViT at 112 px, 8 subjects): for tests")
    parser.add_argument("--sizes", choices=sorted(SIZES), default=None,
                        help="gpu (default), tiny (as --tiny) or cpu (cnn_demo at 64 px on the MNI grid)")
    parser.add_argument("--steps", default=",".join(STEPS),
                        help=f"comma-separated, of {', '.join(STEPS)} (default: all; without job, an untrained model is explained)")
    parser.add_argument("--out", type=Path, default=Path("bench_gpu.json"))
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: a temporary one, removed)")
    parser.add_argument("--compile-backend", default="inductor",
                        help="torch.compile backend of the compiled runs (tests use 'eager': no C++ compilation)")
    parser.add_argument("--threads", type=int, default=8, help="CPU threads of the jobs (compute.threads_per_job on cuda)")
    parser.add_argument("--per-class", type=int, default=None, help="subjects per class (default: 48; tiny: 4)")
    parser.add_argument("--objective", choices=OBJECTIVES, default="slices",
                        help="the real job's training.objective (mil: headmri.training.mil)")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    sizes = SIZES[args.sizes or ("tiny" if args.tiny else "gpu")]
    sizes = replace(sizes, per_class=args.per_class) if args.per_class else sizes
    steps = tuple(args.steps.split(","))
    if set(steps) - set(STEPS):
        parser.error(f"--steps: unknown {sorted(set(steps) - set(STEPS))}; choose of {', '.join(STEPS)}")
    logging.basicConfig(level=logging.WARNING)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    try:
        result = {"environment": environment(device, sizes), **run(sizes, device, work, backend=args.compile_backend,
                                                                    threads=args.threads, steps=steps,
                                                                    objective=args.objective)}
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out} ({result['seconds']} s)", flush=True)
    return result


if __name__ == "__main__":
    main()
