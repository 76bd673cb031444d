"""One registry of encoders: a name in the config -> a classifier with its input size and normalisation.

Names:
- ``biomedclip``: BiomedCLIP's ViT-B/16 trunk with BiomedCLIP's weights (``model.checkpoint``: a local
  open_clip file or folder, or an ``hf-hub:`` id; unset: the hub) and normalisation, input 224.
- ``timm:<name>``: any timm Vision Transformer with a class token, random or with timm's pretrained
  weights (``model.pretrained``; needs the network or the HF cache), or weights from a local timm
  checkpoint file (``model.checkpoint``).
- ``vit_tiny_demo``: a small ViT (patch 8, 112 px, 4 blocks of width 96) for CPU demo runs and tests;
  the same module layout as the others. Its 14 x 14 token grid is BiomedCLIP's (patch 16 at 224 px), so
  its maps have the paper's resolution (about 16 mm per token on the MNI grid, not 31 mm as with patch
  16 at 112 px); width 96 keeps the cost per image near that of the coarser model. Which map method
  finds the demo's planted regions with it: docs/explanations.md.
- ``cnn_demo``: a small 2D CNN (five 3x3 convolution blocks, 64 px, an 8 x 8 last feature grid), the
  CPU demo's default: trained from scratch it leaves chance level within a few epochs on every demo
  fold measured, where ``vit_tiny_demo`` stayed at chance on some (docs/training.md). Explained with
  Grad-CAM on its last block or region occlusion (the attention methods need a ViT).
- ``googlenet``, ``resnet18``: torchvision's 2D CNNs of the fMRI paper (Li et al. 2025), 224 px, ImageNet
  weights from ``model.checkpoint`` or torch's hub cache (``model.pretrained``), never downloaded; random
  initialisation otherwise (``headmri.models.torchvision_cnn``). ``model.freeze`` decides what trains
  (``headmri.models.freezing``).
- ``resnet3d``: the 3D ResNet-18 baseline on whole volumes (not a slice classifier).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch
from torch import nn

from headmri.encoder_names import (  # noqa: F401  (KNOWN_ENCODERS, is_light_encoder: re-exported)
    CNN_DEMO,
    INPUT_SIZES,
    KNOWN_ENCODERS,
    TIMM_PREFIX,
    TINY_DEMO,
    TORCHVISION_CNNS,
    is_light_encoder,
)
from headmri.errors import ConfigError
from headmri.model_inputs import model_input, slice_sizes  # noqa: F401  (slice_sizes: re-exported)
from headmri.models import biomedclip, cnn, torchvision_cnn
from headmri.models.classifier import Classifier
from headmri.models.resnet3d import DEFAULT_VOXEL_SIZE_MM, VolumeClassifier

if TYPE_CHECKING:  # pragma: no cover
    from timm.models.vision_transformer import VisionTransformer

log = logging.getLogger(__name__)

TINY_DEMO_SIZE = INPUT_SIZES[TINY_DEMO]


def build_classifier(
    encoder: str,
    num_classes: int,
    *,
    pretrained: bool = False,
    checkpoint: str | Path | None = None,
    classes: Sequence[str] | None = None,
    voxel_size_mm: float = DEFAULT_VOXEL_SIZE_MM,
) -> Classifier | cnn.SliceCNN | torchvision_cnn.TorchvisionCNN | VolumeClassifier:
    """A classifier for ``encoder`` with its weights (see the module docstring for what each name loads).

    ``voxel_size_mm`` only concerns the volume baseline: the grid its inputs are resampled to.
    """
    classes = _class_names(num_classes, classes)
    if encoder == "biomedclip":
        if checkpoint is None:
            log.info("biomedclip: no model.checkpoint given, loading %s", biomedclip.HUB_ID)
        return _biomedclip_classifier(biomedclip.load_biomedclip_trunk(checkpoint), classes)
    if encoder.startswith(TIMM_PREFIX):
        return _timm_classifier(encoder, classes, pretrained=pretrained, checkpoint=checkpoint)
    if encoder in TORCHVISION_CNNS:
        return torchvision_cnn.build(encoder, classes, pretrained=pretrained, checkpoint=checkpoint)
    if encoder in (TINY_DEMO, CNN_DEMO, "resnet3d"):
        if pretrained or checkpoint is not None:
            raise ConfigError(f"encoder {encoder!r} has no pretrained weights; set model.pretrained: false and model.checkpoint: null")
        return build_architecture(encoder, classes, voxel_size_mm=voxel_size_mm)
    raise unknown_encoder(encoder)


def build_architecture(
    encoder: str,
    classes: Sequence[str],
    *,
    device: str | torch.device | None = None,
    voxel_size_mm: float = DEFAULT_VOXEL_SIZE_MM,
) -> Classifier | cnn.SliceCNN | torchvision_cnn.TorchvisionCNN | VolumeClassifier:
    """The network for ``encoder`` with random weights and no downloads (to load a trained state dict into).

    ``device="meta"`` skips allocation and initialisation for the transformer trunks.
    """
    classes = tuple(classes)
    if encoder == "biomedclip":
        return _biomedclip_classifier(biomedclip.build_trunk(device=device), classes)
    if encoder.startswith(TIMM_PREFIX):
        with torch.device(device or "cpu"):
            trunk = _create_timm(encoder, pretrained=False)
        return _wrap_timm(encoder, trunk, classes)
    if encoder == TINY_DEMO:
        from timm.models.vision_transformer import VisionTransformer

        with torch.device(device or "cpu"):
            trunk = VisionTransformer(
                img_size=TINY_DEMO_SIZE, patch_size=8, embed_dim=96, depth=4, num_heads=3,
                num_classes=0, global_pool="token",
            )
        return Classifier(trunk, encoder=encoder, classes=classes, input_size=TINY_DEMO_SIZE, mean=biomedclip.MEAN, std=biomedclip.STD)
    if encoder == CNN_DEMO:
        with torch.device(device or "cpu"):
            return cnn.SliceCNN(encoder=encoder, classes=classes)
    if encoder in TORCHVISION_CNNS:
        return torchvision_cnn.TorchvisionCNN(encoder, classes, device=device)
    if encoder == "resnet3d":
        return VolumeClassifier(classes, voxel_size_mm=voxel_size_mm)
    raise unknown_encoder(encoder)


def encoder_input_size(encoder: str) -> int | None:
    """The square slice size an encoder takes (``None`` for the volume baseline), without building weights."""
    if model_input(encoder).is_volume:
        return None
    if encoder in INPUT_SIZES:  # a named encoder: known without building (or importing timm or torchvision)
        return INPUT_SIZES[encoder]
    return build_architecture(encoder, ("a", "b"), device="meta").input_size


def is_volume_encoder(encoder: str) -> bool:
    """Whether ``encoder`` takes whole volumes (``headmri.model_inputs``, the one place that says so)."""
    return model_input(encoder).is_volume


def unknown_encoder(encoder: str) -> ConfigError:
    return ConfigError(
        f"unknown encoder {encoder!r} (config model.encoder); known encoders: {', '.join(KNOWN_ENCODERS)} "
        "(timm:<name> is any timm Vision Transformer, e.g. timm:vit_small_patch16_224)"
    )


def _biomedclip_classifier(trunk: VisionTransformer, classes: tuple[str, ...]) -> Classifier:
    return Classifier(
        trunk, encoder="biomedclip", classes=classes, input_size=biomedclip.INPUT_SIZE,
        mean=biomedclip.MEAN, std=biomedclip.STD,
    )


def _timm_classifier(encoder: str, classes: tuple[str, ...], *, pretrained: bool, checkpoint: str | Path | None) -> Classifier:
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise ConfigError(f"model.checkpoint {str(path)!r} is not a file (a timm checkpoint for {encoder})")
        # timm reads a local file through its own pretrained loader (key filtering, pos-embed resizing).
        trunk = _create_timm(encoder, pretrained=True, pretrained_cfg_overlay={"file": str(path)})
    else:
        trunk = _create_timm(encoder, pretrained=pretrained)
    return _wrap_timm(encoder, trunk, classes)


def _create_timm(encoder: str, *, pretrained: bool, **kwargs) -> nn.Module:
    import timm  # timm (and with it torchvision) only for the ViT encoders

    name = encoder[len(TIMM_PREFIX):]
    if not timm.is_model(name):
        raise ConfigError(
            f"unknown encoder {encoder!r}: timm has no model {name!r} "
            f"(list them with timm.list_models('vit_*')); known encoders: {', '.join(KNOWN_ENCODERS)}"
        )
    try:
        return timm.create_model(name, pretrained=pretrained, num_classes=0, **kwargs)
    except (OSError, RuntimeError) as exc:
        if not pretrained:
            raise
        raise ConfigError(
            f"cannot load timm's pretrained weights for {name!r}: they come from the Hugging Face hub, which "
            f"needs the network or a filled HF cache ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
            "Offline, set model.pretrained: false, or give a local timm checkpoint file as model.checkpoint."
        ) from exc


def _wrap_timm(encoder: str, trunk: nn.Module, classes: tuple[str, ...]) -> Classifier:
    from timm.models.vision_transformer import VisionTransformer

    if not isinstance(trunk, VisionTransformer) or getattr(trunk, "global_pool", None) != "token":
        raise ConfigError(
            f"encoder {encoder!r} is a timm {type(trunk).__name__}; "
            "timm:<name> must be a Vision Transformer with a class token (global_pool 'token'), "
            "so that the head and Grad-CAM see the same layout for every encoder"
        )
    cfg = trunk.pretrained_cfg or {}
    size = trunk.patch_embed.img_size
    if size[0] != size[1]:
        raise ConfigError(f"encoder {encoder!r} takes {size} inputs; slices are square")
    return Classifier(
        trunk, encoder=encoder, classes=classes, input_size=size[0],
        mean=cfg.get("mean", biomedclip.MEAN), std=cfg.get("std", biomedclip.STD),
    )


def _class_names(num_classes: int, classes: Sequence[str] | None) -> tuple[str, ...]:
    if classes is None:
        classes = tuple(f"class{i}" for i in range(num_classes))
    classes = tuple(classes)
    if len(classes) != num_classes or num_classes < 2:
        raise ConfigError(f"need at least 2 classes and one name per class, got {num_classes} and {list(classes)}")
    return classes
