"""The slice classifier: a timm Vision Transformer trunk and a linear head on its class token."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import torch
from torch import nn

from headmri.models.grey_input import GreyPatchProjection

if TYPE_CHECKING:  # pragma: no cover  (timm, and torchvision with it, load when a ViT is built)
    from timm.models.vision_transformer import VisionTransformer


class Classifier(nn.Module):
    """``head(trunk(x))``: the trunk pools the class token (timm ``global_pool="token"``), the head maps it to logits.

    Every encoder of the registry except the 3D baseline has this layout, so Grad-CAM hooks the same
    module (``trunk.blocks[-1].norm1``) whatever the trunk's size.

    ``x`` is either (B, 1, S, S) grey slices in 0..1, as the slice loader gives them, or (B, 3, S, S)
    colour input already normalised with ``mean``/``std``: the patch embedding folds the normalisation
    in for grey input (``GreyPatchProjection``), with the same weights and the same result.
    """

    cpu_channels_last = True  # headmri.models.placement: the demo ViT's forward passes 1.4x faster

    kind = "slices"
    target_layer_name = "trunk.blocks[-1].norm1"

    def __init__(
        self,
        trunk: VisionTransformer,
        *,
        encoder: str,
        classes: Sequence[str],
        input_size: int,
        mean: Sequence[float],
        std: Sequence[float],
    ):
        super().__init__()
        if trunk.global_pool != "token":
            raise ValueError(f"the trunk must pool the class token, not {trunk.global_pool!r}")
        if getattr(trunk.patch_embed, "dynamic_img_pad", False):
            raise ValueError("the trunk pads inputs to whole patches; slices must be the trunk's input size")
        trunk.patch_embed.proj = GreyPatchProjection.adopt(trunk.patch_embed.proj, mean, std)
        self.trunk = trunk
        self.head = nn.Linear(trunk.num_features, len(classes))
        self.encoder = encoder
        self.classes = tuple(classes)
        self.input_size = int(input_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    @property
    def patch_grid(self) -> tuple[int, int]:
        """Patch tokens per side (14 x 14 for ViT-B/16 at 224): Grad-CAM reshapes tokens 1: to this."""
        return tuple(self.trunk.patch_embed.grid_size)

    @property
    def paper_trainable(self) -> tuple[str, ...]:
        """What trains with ``model.freeze: paper`` (headmri.models.freezing): the last transformer block, the
        trunk's final norms and the head (the fMRI paper's "last layer and the fully connected layer")."""
        norms = tuple(f"trunk.{n}" for n in ("norm", "fc_norm")
                      if any(True for _ in getattr(self.trunk, n, nn.Identity()).parameters()))
        return (f"trunk.blocks.{len(self.trunk.blocks) - 1}", *norms, "head")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))

    def meta(self) -> dict[str, Any]:
        """What `load_trained` needs to rebuild this model, and what its users need to feed it."""
        return {
            "kind": self.kind,
            "encoder": self.encoder,
            "classes": list(self.classes),
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "target_layer_name": self.target_layer_name,
        }
