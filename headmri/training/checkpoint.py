"""What a training job writes to disk: the final ``model.pt``, and the resume state between epochs.

``model.pt`` = ``{"state_dict": ..., "meta": {...}}``; ``meta`` names the encoder and classes and
carries the input size and normalisation, so ``load_trained`` rebuilds the network without the config
and without downloading anything. Both files are written atomically (temporary name, then rename).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from headmri.atomic import atomic_path
from headmri.errors import InputError
from headmri.models.classifier import Classifier
from headmri.models.registry import build_architecture
from headmri.models.resnet3d import VolumeClassifier


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
    return model.to(device).eval(), meta


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
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a damaged resume file only costs the epochs it held
        return None
