"""``cnn_demo``: a small 2D CNN slice classifier for demo runs on a CPU.

Why a CNN for the CPU demo (docs/training.md, "The demo encoder"): trained from scratch on the demo's
6 + 6 training subjects per fold, the small ViT (``vit_tiny_demo``) sat at chance level (loss ln 2)
for 5-15 epochs on some folds and never left it on others, with class-token or mean pooling and with a
convolutional stem; this network leaves chance within 2-4 epochs on every fold measured. Convolutions
with batch normalisation see local intensity changes from the first step, where a transformer trained
from scratch on a dozen subjects must first learn its own locality. The paper's encoder (BiomedCLIP's
ViT-B/16) is unchanged; this one only makes the CPU demo learn reliably and fast.

Layout: five 3x3 convolution blocks (batch norm, ReLU), widths 16-32-64-128-128, a 2x2 max-pool after
each of the first three, global average pooling and a linear head. It takes 64 px slices (3.4 mm per
pixel for a 218 mm MNI plane) and gives an 8 x 8 feature grid at the last block. Why 64 and not the ViTs'
112 (docs/training.md, "The demo recipe"): a training step costs a third, so the demo trains on every
slice of every subject (not 32 drawn ones) in the same time, and that is what made the folds of a cohort
with one-sided effects learn; region occlusion costs a third too. The input is the loader's grey slice in
0..1, (B, 1, S, S); the first block's batch norm takes care of its scale.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any, Sequence

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from headmri.encoder_names import CNN_DEMO, INPUT_SIZES

INPUT_SIZE = INPUT_SIZES[CNN_DEMO]
WIDTHS = (16, 32, 64, 128, 128)
POOLED_BLOCKS = 3  # a max-pool after each of the first three blocks: 64 -> 8


def _block(channels_in: int, channels_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels_out),
        nn.ReLU(inplace=True),
    )


class SliceCNN(nn.Module):
    """``head(mean over space(features(x)))`` for grey slices (B, 1, S, S) in 0..1."""

    kind = "slices"
    cpu_channels_last = True  # headmri.models.placement: 1.8-2.5x faster forward passes, 1.4x training steps
    target_layer_name = f"features.block{len(WIDTHS)}"  # the last block's output, 8 x 8 at 64 px

    def __init__(self, *, encoder: str, classes: Sequence[str], input_size: int = INPUT_SIZE,
                 widths: Sequence[int] = WIDTHS):
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels = 1
        for i, width in enumerate(widths, start=1):
            layers[f"block{i}"] = _block(channels, width)
            if i <= POOLED_BLOCKS:
                layers[f"pool{i}"] = nn.MaxPool2d(2)
            channels = width
        self.features = nn.Sequential(layers)
        self.head = nn.Linear(channels, len(classes))
        self.encoder = encoder
        self.classes = tuple(classes)
        self.input_size = int(input_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != 1:
            raise ValueError(f"{self.encoder} takes grey slices (B, 1, S, S) in 0..1, got {x.shape[1]} channels")
        return self.head(self.features(x).mean(dim=(2, 3)))

    def inference_copy(self) -> "SliceCNN":
        """A copy for forward passes in eval mode (headmri.models.placement.for_inference): each block's
        batch norm folded into its convolution (PyTorch's ``fuse_conv_bn_eval``), the same outputs to float
        rounding. On one CPU core 1.2-1.5x faster forward passes at batch 16-64 (region occlusion); the
        copy has no batch norms, so it is not for training or for Grad-CAM's hooks."""
        fused = copy.deepcopy(self).eval()
        for name, block in fused.features.named_children():
            if name.startswith("block"):
                block[0] = fuse_conv_bn_eval(block[0], block[1])
                block[1] = nn.Identity()
        return fused

    def meta(self) -> dict[str, Any]:
        """What ``load_trained`` needs to rebuild this model. Grey input in 0..1, no normalisation constants:
        mean 0 and sd 1 say so to readers that expect them."""
        return {
            "kind": self.kind,
            "encoder": self.encoder,
            "classes": list(self.classes),
            "input_size": self.input_size,
            "mean": [0.0],
            "std": [1.0],
            "target_layer_name": self.target_layer_name,
        }
