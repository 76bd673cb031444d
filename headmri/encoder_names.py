"""Encoder names and their size class, without importing torch (the workflow reads them when it plans jobs).

The registry (``headmri.models.registry``) builds the networks behind these names.
"""

from __future__ import annotations

TINY_DEMO = "vit_tiny_demo"
CNN_DEMO = "cnn_demo"
VOLUME_BASELINE = "resnet3d"
TIMM_PREFIX = "timm:"
GOOGLENET = "googlenet"
RESNET18 = "resnet18"
TORCHVISION_CNNS = (GOOGLENET, RESNET18)  # torchvision's 2D CNNs of the fMRI paper (headmri.models.torchvision_cnn)
KNOWN_ENCODERS = ("biomedclip", TINY_DEMO, CNN_DEMO, GOOGLENET, RESNET18, VOLUME_BASELINE, "timm:<name>")
LIGHT_ENCODERS = (TINY_DEMO, CNN_DEMO)  # small enough for a CPU job with a few GB of memory and minutes of time
# The square slice size each named 2D encoder takes (a `timm:<name>` model's is known by building it); the
# model modules read their sizes here, and the workflow plans its slice jobs from it without importing torch.
INPUT_SIZES = {"biomedclip": 224, TINY_DEMO: 112, CNN_DEMO: 64, GOOGLENET: 224, RESNET18: 224}


def is_light_encoder(encoder: str) -> bool:
    """A demo-sized encoder: the workflow gives its jobs little memory and a short runtime."""
    return encoder in LIGHT_ENCODERS
