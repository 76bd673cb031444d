"""One subject's explanation map on the MNI grid, from a slice classifier (ViT) or the 3D baseline.

Slice models: every kept slice of the subject goes through the registered map method
(``headmri.explain.methods``: Grad-CAM, attention rollout, gradient-weighted rollout) in chunks; the raw
maps at the slice size are put back on the volume grid with the subject's ``SliceGeometry``. Volume
models: Grad-CAM on the last convolutional stage gives a coarse 3D map that is upsampled to the
network's input grid's field of view, i.e. the MNI grid. Region methods (occlusion) score regions
directly and do not go through here.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from headmri.errors import ConfigError
from headmri.explain import methods
from headmri.explain.methods import token_layout  # noqa: F401  (re-exported: part of this module's API)

METHODS = methods.NAMES


def check_method(method: str, model_kind: str) -> None:
    """An error unless ``method`` is registered and explains models of ``model_kind`` (slices/volume)."""
    methods.check_method(method, model_kind)


def slice_maps(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    *,
    method: str,
    target: int | Sequence[int],
    target_layer: str | None,
    batch_size: int = 32,
) -> np.ndarray:
    """Raw maps (N, S, S) at the input size for slices (N, 1, S, S) (or normalised (N, 3, S, S))."""
    cls = methods.check_method(method, "slices")
    if cls.scores_regions:
        raise ConfigError(f"explain.method {method!r} scores regions, not pixels: it has no slice maps")
    explainer = cls(model, batch_size=batch_size, target_layer=target_layer if cls.uses_target_layer else None)
    return explainer.slice_maps(inputs, target)


def volume_map(
    model: torch.nn.Module,
    volume: torch.Tensor,
    *,
    target: int,
    target_layer: str,
    output_shape: Sequence[int],
) -> np.ndarray:
    """Grad-CAM of a 3D CNN for one model-ready volume (1, 1, D, H, W), upsampled to ``output_shape``."""
    from headmri.explain.gradcam import GradCAMMethod

    return GradCAMMethod(model, batch_size=1, target_layer=target_layer).volume_map(volume, target, output_shape)
