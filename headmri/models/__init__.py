"""Encoders and classifiers: the registry, BiomedCLIP's loader, the ViT slice classifier, the demo CNN and the 3D baseline."""

from headmri.models.classifier import Classifier
from headmri.models.cnn import SliceCNN
from headmri.models.registry import (
    KNOWN_ENCODERS,
    build_architecture,
    build_classifier,
    encoder_input_size,
    is_light_encoder,
    is_volume_encoder,
    slice_size_of,
)
from headmri.models.resnet3d import VolumeClassifier

__all__ = [
    "KNOWN_ENCODERS",
    "Classifier",
    "SliceCNN",
    "VolumeClassifier",
    "build_architecture",
    "build_classifier",
    "encoder_input_size",
    "is_light_encoder",
    "is_volume_encoder",
    "slice_size_of",
]
