"""The baseline: a 3D ResNet-18 trained from scratch on whole brain volumes (Siddiquee et al. 2022).

torchvision's ``r3d_18`` supplies the residual body; only the stem changes. Its video stem keeps the
time axis at full resolution (kernel 3x7x7, stride 1x2x2) and reads 3 colour channels; a brain volume
is isotropic and single-channel, so the stem here is the 2D ResNet's (7^3 convolution, stride 2, then a
3^3 max-pool of stride 2) made 3D, which also keeps memory and compute in reach of a CPU.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

# The MNI152 1 mm template grid the volumes live on.
TEMPLATE_SHAPE = (182, 218, 182)
DEFAULT_VOXEL_SIZE_MM = 2.0


def volume_shape(voxel_size_mm: float) -> tuple[int, int, int]:
    """The grid a template-space volume is resampled to for the network (91 x 109 x 91 at 2 mm)."""
    return tuple(max(1, round(n / voxel_size_mm)) for n in TEMPLATE_SHAPE)


class VolumeClassifier(nn.Module):
    """3D ResNet-18 over a (B, 1, D, H, W) volume; Grad-CAM targets ``backbone.layer4``."""

    kind = "volume"
    target_layer_name = "backbone.layer4"

    def __init__(self, classes: Sequence[str], *, voxel_size_mm: float = DEFAULT_VOXEL_SIZE_MM):
        super().__init__()
        self.encoder = "resnet3d"
        self.classes = tuple(classes)
        self.voxel_size_mm = float(voxel_size_mm)
        self.input_shape = volume_shape(self.voxel_size_mm)
        from torchvision.models.video import r3d_18  # only the baseline needs torchvision

        backbone = r3d_18(weights=None, num_classes=len(self.classes))
        backbone.stem = nn.Sequential(
            nn.Conv3d(1, 64, kernel_size=7, stride=2, padding=3, bias=False),
            nn.BatchNorm3d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=3, stride=2, padding=1),
        )
        self.backbone = backbone
        # Volumes are scaled to [0, 1] inside the brain (see headmri.training.volumes); kept for symmetry
        # with the slice classifier's metadata.
        self.mean = (0.0,)
        self.std = (1.0,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def meta(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "encoder": self.encoder,
            "classes": list(self.classes),
            "voxel_size_mm": self.voxel_size_mm,
            "input_shape": list(self.input_shape),
            "mean": list(self.mean),
            "std": list(self.std),
            "target_layer_name": self.target_layer_name,
        }
