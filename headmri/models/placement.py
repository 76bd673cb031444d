"""Where a model runs and in which memory layout: one function for training, checkpoints and explanations."""

from __future__ import annotations

import torch
from torch import nn


def place(model: nn.Module, device: torch.device | str) -> nn.Module:
    """``model`` on ``device``; on the CPU in channels-last layout when its class says so
    (``cpu_channels_last``).

    oneDNN's CPU convolutions are faster on channels-last tensors: on one core of the development VM the
    demo CNN's forward passes (occlusion) ran 1.8-2.5x faster, its training steps 1.4x, the demo ViT's
    forward 1.4x (docs/benchmarks.md, "The demo workflow"). Values agree to float rounding, not bit
    for bit. Not for the torchvision CNNs (ResNet18 1.2x, and GoogLeNet's randomised copy in the sanity
    check computes at 1e-13, where the two layouts' rounding decides whether its maps are constant), the
    3D baseline (5-D weights) or CUDA (not measured there).
    """
    device = torch.device(device)
    model = model.to(device)
    if device.type == "cpu" and getattr(model, "cpu_channels_last", False):
        model = model.to(memory_format=torch.channels_last)
    return model


def for_inference(model: nn.Module) -> nn.Module:
    """``model`` for forward passes without gradients in eval mode: the model's own ``inference_copy()``
    where it has one (``cnn_demo``: batch norms folded into the convolutions), else the model itself.
    Take it anew after the weights change (the copy does not follow them)."""
    copy = getattr(model, "inference_copy", None)
    return copy() if callable(copy) and not model.training else model
