"""Attention rollout (Abnar & Zuidema 2020) for timm Vision Transformers: the second explanation method.

Each block's attention is averaged over heads, the residual connection is added as an identity
(A' = 0.5 A + 0.5 I, rows renormalised), and the blocks are multiplied from first to last; the CLS
token's row over the patch tokens is the map. Rollout is class-agnostic: it shows where the CLS token
gathers information, not evidence for one class (Grad-CAM does that).

The attention matrices are read with timm's own ``AttentionExtract`` (forward hooks on each block's
``attn_drop``, which sees the softmax attention). Those hooks only fire on timm's non-fused attention
path, so fused attention is switched off for the duration of the call and restored afterwards.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch
from timm.layers import Attention
from timm.utils import AttentionExtract

from headmri.errors import ConfigError


def attention_modules(model: torch.nn.Module) -> dict[str, Attention]:
    """Every timm ``Attention`` module by its qualified name, in forward order."""
    found = {name: module for name, module in model.named_modules() if isinstance(module, Attention)}
    if not found:
        raise ConfigError(f"attention rollout needs a timm Vision Transformer; {type(model).__name__} has no timm Attention layers")
    return found


@contextlib.contextmanager
def unfused_attention(modules: dict[str, Attention]) -> Iterator[None]:
    saved = {name: module.fused_attn for name, module in modules.items()}
    for module in modules.values():
        module.fused_attn = False
    try:
        yield
    finally:
        for name, module in modules.items():
            module.fused_attn = saved[name]


def rollout_from_attentions(attentions: list[torch.Tensor], n_prefix_tokens: int, grid: tuple[int, int]) -> torch.Tensor:
    """Roll (B, heads, N, N) attentions of consecutive blocks out into (B, gh, gw) CLS-to-patch maps."""
    rolled = None
    for attention in attentions:
        fused = attention.float().mean(dim=1)  # average over heads
        eye = torch.eye(fused.shape[-1], device=fused.device, dtype=fused.dtype)
        fused = 0.5 * fused + 0.5 * eye  # the residual path
        fused = fused / fused.sum(dim=-1, keepdim=True)
        rolled = fused if rolled is None else fused @ rolled
    if rolled is None:
        raise ConfigError("attention rollout found no attention maps")
    cls_row = rolled[:, 0, n_prefix_tokens:]
    gh, gw = grid
    if cls_row.shape[1] != gh * gw:
        raise ValueError(f"expected {gh * gw} patch tokens, got {cls_row.shape[1]}")
    return cls_row.reshape(-1, gh, gw)


def attention_rollout(
    model: torch.nn.Module,
    inputs: torch.Tensor | np.ndarray,
    n_prefix_tokens: int,
    grid: tuple[int, int],
    batch_size: int = 32,
) -> np.ndarray:
    """Rollout maps (N, gh, gw) for model-ready inputs; no gradients are needed."""
    modules = attention_modules(model)
    device = next(model.parameters()).device
    names = [f"{name}.attn_drop" for name in modules]
    was_training = model.training
    out: list[np.ndarray] = []
    with unfused_attention(modules), torch.no_grad():
        extractor = AttentionExtract(model, names=names, method="hook")  # puts the model in eval mode
        try:
            for start in range(0, len(inputs), batch_size):
                chunk = torch.as_tensor(inputs[start : start + batch_size]).to(device, torch.float32)
                found = extractor(chunk)
                attentions = [found[name] for name in names]
                out.append(rollout_from_attentions(attentions, n_prefix_tokens, grid).cpu().numpy())
        finally:
            for handle in getattr(extractor.hooks, "_handles", []):
                handle.remove()
            model.train(was_training)
    return np.concatenate(out, axis=0) if out else np.zeros((0, *grid), np.float32)
