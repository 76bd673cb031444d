"""The patch embedding of a colour ViT, fed with grey slices: the per-channel normalisation folded into it.

Why: an MRI slice copied into three channels and normalised with the encoder's per-channel constants is
three float32 images per slice for the loader to write, which is what bounded loading throughput on the
CPU (docs/benchmarks.md). The patch embedding is a convolution with kernel = stride = patch and no
padding, so for a grey value ``g`` repeated over the channels

    sum_c W_c * (g - mean_c) / std_c + b  ==  (sum_c W_c / std_c) * g + (b - sum_c mean_c / std_c * sum W_c)

exactly: one single-channel convolution with folded weights gives the same embedding as the three-channel
one. The stored parameters stay the three-channel ``weight`` and ``bias`` (same state-dict keys and
shapes as timm's and BiomedCLIP's checkpoints), and gradients reach them through the fold, so training
on grey input updates the same weights it would on the normalised colour input.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class GreyPatchProjection(nn.Conv2d):
    """A patch-embedding convolution that takes either (B, C, H, W) normalised colour input, as timm's
    does, or (B, 1, H, W) grey values in 0..1, normalised per channel with ``mean``/``std`` on the way in."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def adopt(cls, conv: nn.Conv2d, mean: Sequence[float], std: Sequence[float]) -> GreyPatchProjection:
        """The same convolution, holding ``conv``'s own parameter tensors (no copy, nothing re-initialised)."""
        if type(conv) is cls:
            return conv
        if len(mean) != conv.in_channels or len(std) != conv.in_channels:
            raise ValueError(f"{conv.in_channels} input channels but {len(mean)} means and {len(std)} sds")
        if any(p != 0 for p in conv.padding) or conv.padding_mode != "zeros" or conv.groups != 1 \
                or tuple(conv.kernel_size) != tuple(conv.stride):
            # padding would add zeros that are not normalised zeros, overlapping patches are not the point
            raise ValueError("the fold is exact only for an unpadded patch convolution (kernel = stride)")
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                  bias=conv.bias is not None, device="meta")
        new.weight = conv.weight
        new.bias = conv.bias
        new.mean = tuple(float(m) for m in mean)
        new.std = tuple(float(s) for s in std)
        return new

    def grey_weight_and_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(out, 1, k, k) weight and (out,) bias of the single-channel convolution equal to this one on grey input."""
        weight = sum(self.weight[:, c:c + 1] / s for c, s in enumerate(self.std))
        shift = sum(self.weight[:, c].sum((1, 2)) * (m / s) for c, (m, s) in enumerate(zip(self.mean, self.std)))
        bias = -shift if self.bias is None else self.bias - shift
        return weight, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == self.in_channels:
            return super().forward(x)
        if x.shape[1] != 1:
            raise ValueError(f"expected {self.in_channels} normalised channels or 1 grey channel, got {x.shape[1]}")
        weight, bias = self.grey_weight_and_bias()
        return F.conv2d(x, weight, bias, self.stride)
