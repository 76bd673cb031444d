"""Attention rollout (Abnar & Zuidema 2020) for timm Vision Transformers: the ``rollout`` explanation method.

Each block's attention is averaged over heads, the residual connection is added as an identity
(A' = 0.5 A + 0.5 I, rows renormalised), and the blocks are multiplied from first to last; the CLS
token's row over the patch tokens is the map (for a trunk that pools the mean of its patch tokens
instead, the mean of the patch tokens' rows). Rollout is class-agnostic: it shows where the CLS token
gathers information, not evidence for one class (Grad-CAM and ``chefer`` do that).

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
from headmri.explain.methods import AttentionMethod, pooling, token_layout


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


def pooled_relevance(rolled: torch.Tensor, n_prefix_tokens: int, grid: tuple[int, int], pool: str = "token",
                     include_prefix: bool = False) -> torch.Tensor:
    """The rows of a rolled-out (B, N, N) token matrix that the head reads, over the patch columns, as
    (B, gh, gw) maps: the class token's row (``token``), or the mean of the pooled tokens' rows (``avg``:
    the patch tokens, prefix tokens too when the trunk's ``pool_include_prefix`` says so)."""
    if pool == "token":
        rows = rolled[:, 0, n_prefix_tokens:]
    elif pool == "avg":
        rows = rolled[:, (0 if include_prefix else n_prefix_tokens):, n_prefix_tokens:].mean(dim=1)
    else:
        raise ConfigError(f"cannot read a map for a trunk that pools with {pool!r}")
    gh, gw = grid
    if rows.shape[1] != gh * gw:
        raise ValueError(f"expected {gh * gw} patch tokens, got {rows.shape[1]}")
    return rows.reshape(-1, gh, gw)


def rollout_from_attentions(attentions: list[torch.Tensor], n_prefix_tokens: int, grid: tuple[int, int],
                            pool: str = "token", include_prefix: bool = False) -> torch.Tensor:
    """Roll (B, heads, N, N) attentions of consecutive blocks out into (B, gh, gw) maps (class token to
    patches; ``pooled_relevance`` for a mean-pooling trunk)."""
    rolled = None
    for attention in attentions:
        fused = attention.float().mean(dim=1)  # average over heads
        eye = torch.eye(fused.shape[-1], device=fused.device, dtype=fused.dtype)
        fused = 0.5 * fused + 0.5 * eye  # the residual path
        fused = fused / fused.sum(dim=-1, keepdim=True)
        rolled = fused if rolled is None else fused @ rolled
    if rolled is None:
        raise ConfigError("attention rollout found no attention maps")
    return pooled_relevance(rolled, n_prefix_tokens, grid, pool, include_prefix)


def attention_rollout(
    model: torch.nn.Module,
    inputs: torch.Tensor | np.ndarray,
    n_prefix_tokens: int,
    grid: tuple[int, int],
    batch_size: int = 32,
    pool: str = "token",
    include_prefix: bool = False,
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
                out.append(rollout_from_attentions(attentions, n_prefix_tokens, grid, pool, include_prefix).cpu().numpy())
        finally:
            for handle in getattr(extractor.hooks, "_handles", []):
                handle.remove()
            model.train(was_training)
    return np.concatenate(out, axis=0) if out else np.zeros((0, *grid), np.float32)


class AttentionRollout(AttentionMethod):
    """Attention rollout through every block, upsampled bilinearly to the slice size. Class-agnostic:
    the targets are accepted (one interface) and ignored."""

    name = "rollout"
    class_specific = False

    def slice_maps(self, slices, targets) -> np.ndarray:
        from headmri.explain.gradcam import upsample

        n_prefix, grid = token_layout(self.model)
        pool = pooling(self.model)
        coarse = attention_rollout(self.model, slices, n_prefix, grid, self.batch_size, pool=pool,
                                   include_prefix=bool(getattr(self.model.trunk, "pool_include_prefix", False)))
        return upsample(coarse, slices.shape[-2:])
