"""What a training job writes to disk: the final ``model.pt``, and the resume state between epochs.

``model.pt`` = ``{"state_dict": ..., "meta": {...}}``; ``meta`` names the encoder and classes and
carries the input size and normalisation, so ``load_trained`` rebuilds the network without the config
and without downloading anything. Both files are written atomically (temporary name, then rename).

Resume states are written by a ``CheckpointWriter``: the training thread only copies the state to host
memory (a ViT-B/16 with AdamW: about 1 GB); serialising and writing it, 1.2-1.7 s per epoch on the H200
machine (issue 17), happens on a background thread while the next epoch trains.
"""

from __future__ import annotations

import logging
import random
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from headmri.atomic import atomic_path
from headmri.errors import InputError
from headmri.models.classifier import Classifier
from headmri.models.placement import place
from headmri.models.registry import build_architecture
from headmri.models.resnet3d import VolumeClassifier

log = logging.getLogger(__name__)


def save_torch(obj: Any, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_trained(model: Classifier | VolumeClassifier, path: str | Path, **meta: Any) -> None:
    """Write ``model.pt``: the weights and the metadata (the model's own plus ``meta``: task, fold, ...)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_torch({"state_dict": state, "meta": {**model.meta(), **meta}}, path)


def load_trained(path: str | Path, device: str | torch.device = "cpu") -> tuple[Classifier | VolumeClassifier, dict]:
    """The trained model of ``model.pt`` in eval mode on ``device``, and its metadata."""
    path = Path(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        meta, state = dict(blob["meta"]), blob["state_dict"]
    except Exception as exc:  # unreadable, not a torch file, or not our format: all mean the same to the user
        raise InputError(f"not a trained headmri model ({type(exc).__name__}: {exc})", path=path) from exc
    if meta.get("kind") == "volume":
        model: nn.Module = build_architecture(meta["encoder"], meta["classes"], voxel_size_mm=meta["voxel_size_mm"])
    else:
        # On the meta device: no initialisation work, the saved tensors are adopted as they are.
        model = build_architecture(meta["encoder"], meta["classes"], device="meta")
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise InputError(f"the weights do not fit encoder {meta.get('encoder')!r}: {exc}", path=path) from exc
    return place(model, device).eval(), meta


def rng_state() -> dict[str, Any]:
    """Every random generator a training epoch may draw from (dropout, drop-path, augmentation)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(keys.copy()), int(pos), int(has_gauss), float(cached)],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(_as_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value: Any) -> Any:
    # random.setstate wants tuples all the way down; a round trip through torch.save may give lists.
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def load_resume(path: str | Path) -> dict | None:
    """The resume state, or ``None`` when there is none or it cannot be read (a clean restart then)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        # memory-mapped: reading the epoch and fingerprint does not read the weights
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # a damaged resume file only costs the epochs it held
        return None


def host_copy(obj: Any) -> Any:
    """``obj`` (state dicts, lists, plain values) with every tensor copied to host memory, so training may
    go on changing the originals. Device tensors are copied asynchronously and waited for once."""
    on_device = []

    def copy(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            if value.device.type == "cpu":
                return value.detach().clone()
            on_device.append(value.device)
            return value.detach().to("cpu", non_blocking=True)
        if isinstance(value, Mapping):
            return {key: copy(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(copy(item) for item in value)
        return value

    copied = copy(obj)
    for device in set(on_device):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return copied


class CheckpointWriter:
    """Writes torch files in the order they were given, from host copies made on the caller's thread.

    ``background``: the writing happens on one worker thread (``save`` returns once the copy is made);
    a second ``save`` waits for the first to be written, so at most one copy waits in memory. ``close``
    waits for the last file and raises any error of the writes.
    """

    def __init__(self, background: bool = True):
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="checkpoint-writer") if background else None
        self._pending: Future | None = None
        self.copy_seconds = 0.0  # on the training thread, summed over saves
        self.write_seconds = 0.0  # on the writer thread

    def save(self, obj: Any, path: str | Path) -> None:
        started = time.perf_counter()
        snapshot = host_copy(obj)
        self.copy_seconds += time.perf_counter() - started
        if self._pool is None:
            self._write(snapshot, Path(path))
            return
        self.wait()
        self._pending = self._pool.submit(self._write, snapshot, Path(path))

    def _write(self, snapshot: Any, path: Path) -> None:
        started = time.perf_counter()
        save_torch(snapshot, path)
        self.write_seconds += time.perf_counter() - started

    def wait(self) -> None:
        """Until the file being written is on disk (an error in writing it is raised here)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
