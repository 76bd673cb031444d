"""Which parameters train (config ``model.freeze``): the fMRI paper's transfer learning, or everything.

Li et al. 2025 ("Transfer Learning"): ImageNet weights, "all weights throughout the network were frozen
and did not participate in backpropagation, except for those in the last convolutional layer and the
fully connected layer". Rules:

- ``paper``: only the model's last block and its classifier train (the modules the model lists in
  ``paper_trainable``: ``net.inception5b`` + ``net.fc`` for GoogLeNet, ``net.layer4`` + ``net.fc`` for
  ResNet18, the last transformer block, the final norm and the head for a ViT). Batch norms of the frozen
  part stay in evaluation mode while training (``FrozenNormsMixin``): frozen means the frozen part computes
  the same function at every step; in training mode their running statistics would drift with every batch;
- ``none``: every parameter trains (the structural paper's full fine-tuning, and training from scratch);
- ``auto`` (the default): ``paper`` for the fMRI paper's CNNs (``googlenet``, ``resnet18``) when ImageNet
  weights are loaded, ``none`` otherwise (random initialisation: frozen random features teach nothing;
  BiomedCLIP and the other ViTs keep the full fine-tuning of the structural paper).
"""

from __future__ import annotations

import logging

from torch import nn

from headmri.encoder_names import TORCHVISION_CNNS
from headmri.errors import ConfigError

log = logging.getLogger(__name__)

FREEZE_RULES = ("auto", "paper", "none")


def resolve_freeze(rule: str, encoder: str, *, weights_loaded: bool) -> str:
    """``paper`` or ``none`` for ``rule`` (``auto`` decided from the encoder and whether weights were loaded)."""
    if rule not in FREEZE_RULES:
        raise ConfigError(f"model.freeze must be one of {list(FREEZE_RULES)}, got {rule!r}")
    if rule == "auto":
        return "paper" if encoder in TORCHVISION_CNNS and weights_loaded else "none"
    if rule == "paper" and not weights_loaded:
        log.warning("model.freeze: paper with randomly initialised weights: only the last block and the classifier "
                    "train, on top of random frozen features")
    return rule


class FrozenNormsMixin:
    """For an ``nn.Module``: ``train()`` keeps the batch norms listed in ``frozen_norms`` in evaluation mode."""

    frozen_norms: tuple[str, ...] = ()

    def train(self, mode: bool = True):
        super().train(mode)  # type: ignore[misc]
        for name in self.frozen_norms:
            self.get_submodule(name).eval()  # type: ignore[attr-defined]
        return self


def apply_freeze(model: nn.Module, rule: str) -> list[str]:
    """Set ``requires_grad`` by ``rule`` (``paper`` or ``none``); returns the names of the modules that train
    (``[""]``: all of them). Logs how many parameters train."""
    total = sum(p.numel() for p in model.parameters())
    if rule == "none":
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        log.info("model.freeze none: all %d parameters train", total)
        return [""]
    if rule != "paper":
        raise ConfigError(f"cannot apply freeze rule {rule!r}; resolve it first (resolve_freeze)")
    trainable = list(getattr(model, "paper_trainable", ()) or ())
    if not trainable:
        raise ConfigError(f"model.freeze: paper is defined for googlenet, resnet18 and the ViT encoders; "
                          f"{getattr(model, 'encoder', type(model).__name__)!r} names no last block")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for name in trainable:
        for parameter in model.get_submodule(name).parameters():
            parameter.requires_grad_(True)
    if isinstance(model, FrozenNormsMixin):
        model.frozen_norms = tuple(
            name for name, module in model.named_modules()
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in module.parameters())
        )
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("model.freeze paper (Li et al. 2025): %d of %d parameters train (%s); the rest is frozen",
             n_train, total, ", ".join(trainable))
    return trainable
