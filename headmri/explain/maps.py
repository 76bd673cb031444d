"""One subject's explanation map on the MNI grid, from a slice classifier (ViT) or the 3D baseline.

Slice models: every kept slice of the subject goes through the network in chunks; the raw token-grid
maps (Grad-CAM or attention rollout) are upsampled to the slice size and put back on the volume grid
with the subject's ``SliceGeometry``. Volume models: Grad-CAM on the last convolutional stage gives a
coarse 3D map that is upsampled to the network's input grid's field of view, i.e. the MNI grid.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from headmri.errors import ConfigError
from headmri.explain.gradcam import raw_gradcam, resolve_module, upsample, vit_token_grid
from headmri.explain.rollout import attention_rollout

METHODS = ("gradcam", "rollout")


def check_method(method: str, model_kind: str) -> None:
    if method not in METHODS:
        raise ConfigError(f"explain.method must be one of {METHODS}, got {method!r}")
    if method == "rollout" and model_kind != "slices":
        raise ConfigError("attention rollout needs a Vision Transformer; the 3D baseline is explained with Grad-CAM")


def token_layout(model: torch.nn.Module) -> tuple[int, tuple[int, int]]:
    """(number of prefix tokens, patch grid) of a classifier with a timm ViT ``trunk``."""
    trunk = getattr(model, "trunk", None)
    if trunk is None or not hasattr(trunk, "patch_embed"):
        raise ConfigError(f"{type(model).__name__} has no ViT trunk (expected model.trunk.patch_embed)")
    return int(getattr(trunk, "num_prefix_tokens", 1)), tuple(int(g) for g in trunk.patch_embed.grid_size)


def slice_maps(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    *,
    method: str,
    target: int,
    target_layer: str,
    batch_size: int = 32,
) -> np.ndarray:
    """Raw maps (N, S, S) at the input size for model-ready slices (N, 3, S, S)."""
    n_prefix, grid = token_layout(model)
    if method == "gradcam":
        layer = resolve_module(model, target_layer)
        coarse = raw_gradcam(model, inputs, target, layer, vit_token_grid(n_prefix, grid), batch_size)
    elif method == "rollout":
        coarse = attention_rollout(model, inputs, n_prefix, grid, batch_size)
    else:
        check_method(method, "slices")
        raise AssertionError("unreachable")
    return upsample(coarse, inputs.shape[-2:])


def volume_map(
    model: torch.nn.Module,
    volume: torch.Tensor,
    *,
    target: int,
    target_layer: str,
    output_shape: Sequence[int],
) -> np.ndarray:
    """Grad-CAM of a 3D CNN for one model-ready volume (1, 1, D, H, W), upsampled to ``output_shape``.

    The network's input grid and the output grid cover the same field of view (the input is a
    resampling of the MNI grid), so a trilinear resize with half-voxel centres maps one onto the other.
    """
    layer = resolve_module(model, target_layer)
    coarse = raw_gradcam(model, volume, target, layer, reshape_transform=None, batch_size=1)
    if coarse.ndim != 4:
        raise ConfigError(f"Grad-CAM on {target_layer!r} gave maps of shape {coarse.shape}; a 3D CNN layer gives (N, d, h, w)")
    return upsample(coarse, output_shape)[0]
