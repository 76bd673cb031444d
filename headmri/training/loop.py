"""One training epoch and one prediction pass, for any classifier and any batch loader of the project.

Loaders yield (x, y, subject_index[, slice_index]) tuples (``SliceBatchLoader``, ``VolumeBatchLoader``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from headmri.models.placement import for_inference

log = logging.getLogger(__name__)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (tensor cores, no loss scaling needed); full precision on CPU, where bf16
    matmuls are slow on most processors and would make CPU runs depend on the instruction set."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on weight matrices and kernels; none on biases, norms, tokens and position
    embeddings (the usual ViT fine-tuning practice: decaying those only hurts)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        skip = param.ndim < 2 or name.endswith(("cls_token", "pos_embed", "reg_token", "dist_token"))
        (no_decay if skip else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, *, lr: float, weight_decay: float, device: torch.device) -> torch.optim.AdamW:
    # fused AdamW: one kernel for all parameters on CUDA; the default (foreach) path elsewhere.
    return torch.optim.AdamW(parameter_groups(model, weight_decay), lr=lr, fused=device.type == "cuda" or None)


def compile_model(model: nn.Module, **options) -> nn.Module:
    """``model`` compiled in place with ``torch.compile`` (``nn.Module.compile``: the state dict keeps its
    keys, so checkpoints do not change). Compilation happens at the first call of each mode (train,
    eval) and input shape; the job logs the first training step's time, which includes it."""
    model.compile(**options)
    return model


# Where stderr is not a terminal (a Snakemake job's log file), a long epoch logs a line at most this often.
PROGRESS_LOG_SECONDS = 60.0


class _LoggedProgress:
    """The stand-in for a progress bar in a log file: no bar, whose redraws are carriage-return fragments
    there, but a plain log line (``desc: batch i/n, loss x, t s``) at most every ``every`` seconds, so a
    long epoch still shows it is alive. The line per finished epoch is the caller's. The postfix values
    may be callables: they are read only when a line is written (reading a loss off a GPU waits for it)."""

    def __init__(self, iterable, *, total: int, desc: str, every: float):
        self.iterable, self.total, self.desc, self.every = iterable, total, desc, every
        self.values: dict = {}

    def __iter__(self):
        started = last = time.monotonic()
        for done, item in enumerate(self.iterable, 1):
            yield item  # the caller's work on the batch happens here
            now = time.monotonic()
            if now - last >= self.every and done < self.total:
                log.info("%s: batch %d/%d%s, %.0f s", self.desc, done, self.total, _postfix(self.values), now - started)
                last = now

    def set_postfix(self, refresh: bool = False, **values) -> None:
        self.values = values

    def close(self) -> None:
        pass


def _postfix(values: dict) -> str:
    return "".join(f", {name} {value() if callable(value) else value}" for name, value in values.items())


class _TerminalProgress:
    """tqdm on an interactive terminal, its postfix (callables read then) refreshed at most every second."""

    def __init__(self, iterable, *, total: int, desc: str):
        self.bar = tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)
        self.last = -math.inf

    def __iter__(self):
        return iter(self.bar)

    def set_postfix(self, refresh: bool = False, **values) -> None:
        now = time.monotonic()
        if now - self.last >= 1.0:
            self.bar.set_postfix_str(_postfix(values).lstrip(", "), refresh=refresh)
            self.last = now

    def close(self) -> None:
        self.bar.close()


def _progress(iterable, *, total: int, desc: str, enabled: bool):
    """A tqdm bar on an interactive terminal; in a log file (any other stderr) a line at most every
    ``PROGRESS_LOG_SECONDS``; nothing when not ``enabled``."""
    if enabled and sys.stderr.isatty():
        return _TerminalProgress(iterable, total=total, desc=desc)
    return _LoggedProgress(iterable, total=total, desc=desc, every=PROGRESS_LOG_SECONDS if enabled else float("inf"))


def train_epoch(
    model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    *,
    device: torch.device,
    grad_clip: float | None,
    desc: str = "train",
    progress: bool = True,
    first_step_note: str | None = None,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> float:
    """One pass over ``loader`` with cross-entropy; the scheduler steps per batch; ``augment`` (if given)
    transforms each input batch on the device; ``loss_fn(logits, y, subject_index)`` (if given) replaces the
    cross-entropy per item (``headmri.training.mil``). Returns the mean loss per item.

    The step never waits for the device: the loss is summed on the device (in float64, as the Python
    float sum it replaces, so CPU results are unchanged to the bit) and read once, at the end; progress
    lines read it only when they are written. With ``first_step_note`` the first step is waited for and
    its time logged with that note (how long ``torch.compile`` took).
    """
    model.train()
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    bar = _progress(loader, total=len(loader), desc=desc, enabled=progress)
    running = lambda: f"{float(total) / max(count, 1):.4f}"  # noqa: E731  (read only when a line is shown)
    started = time.perf_counter()
    for batch in bar:
        x, y = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
        if augment is not None:
            x = augment(x)
        with autocast(device):
            logits = model(x)
        if loss_fn is None:
            loss = F.cross_entropy(logits.float(), y)
        else:
            loss = loss_fn(logits.float(), y, batch[2].to(device, non_blocking=True))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        scheduler.step()
        total += loss.detach().double() * y.numel()
        if first_step_note is not None and count == 0:
            float(total)  # waits for the device to finish the step
            log.info("first training step: %.1f s (%s)", time.perf_counter() - started, first_step_note)
        count += y.numel()
        bar.set_postfix(loss=running, refresh=False)
    bar.close()
    if count == 0:
        raise ValueError("the training loader yielded no items")
    return float(total) / count


@dataclass(frozen=True)
class Predictions:
    """Per item: class probabilities (N, C), the loader's subject index and the slice's position in its array."""

    probabilities: np.ndarray
    subject_index: np.ndarray
    slice_position: np.ndarray


@torch.no_grad()
def predict(model: nn.Module, loader, *, device: torch.device, desc: str = "predict", progress: bool = True) -> Predictions:
    """Softmax probabilities for every item of ``loader`` (built with ``with_slice_index=True``). They stay
    on the device until the pass is over: one transfer, not a wait per batch."""
    model.eval()
    network = for_inference(model)  # the demo CNN with its batch norms folded: faster, the same outputs
    probs, subjects, positions = [], [], []
    for batch in _progress(loader, total=len(loader), desc=desc, enabled=progress):
        x = batch[0].to(device, non_blocking=True)
        with autocast(device):
            logits = network(x)
        probs.append(torch.softmax(logits.float(), dim=1))
        subjects.append(batch[2].cpu().numpy())  # the loaders' indices are host tensors
        positions.append(batch[3].cpu().numpy())
    if not probs:
        return Predictions(np.zeros((0, 0)), np.zeros(0, np.int64), np.zeros(0, np.int64))
    return Predictions(torch.cat(probs).cpu().numpy().astype(np.float64), np.concatenate(subjects),
                       np.concatenate(positions))
