"""Encoders and classifiers: the registry, BiomedCLIP's loader, the ViT slice classifier, the demo CNN, torchvision's
GoogLeNet and ResNet18 (the fMRI paper's), what trains (``freezing``) and the 3D baseline."""

from headmri.models.classifier import Classifier
from headmri.models.cnn import SliceCNN
from headmri.models.placement import for_inference, place
from headmri.models.registry import (
    KNOWN_ENCODERS,
    build_architecture,
    build_classifier,
    encoder_input_size,
    is_light_encoder,
    is_volume_encoder,
    slice_sizes,
)
from headmri.models.resnet3d import VolumeClassifier
from headmri.models.torchvision_cnn import TorchvisionCNN

__all__ = [
    "KNOWN_ENCODERS",
    "Classifier",
    "SliceCNN",
    "TorchvisionCNN",
    "VolumeClassifier",
    "build_architecture",
    "build_classifier",
    "encoder_input_size",
    "for_inference",
    "is_light_encoder",
    "is_volume_encoder",
    "place",
    "slice_sizes",
]
