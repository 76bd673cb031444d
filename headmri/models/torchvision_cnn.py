"""``googlenet`` and ``resnet18``: torchvision's 2D CNNs as slice classifiers (Li et al. 2025, the fMRI paper).

The network is torchvision's, with its classifier (``fc``) replaced by a linear layer for the task's
classes and GoogLeNet's auxiliary heads left out (they only serve ImageNet training). Input: the slice
loader's grey slices (B, 1, 224, 224) in 0..1, copied into 3 channels and normalised with the weights'
constants in ``forward``; (B, 3, 224, 224) input is taken as already normalised, as for the ViTs.

- ``resnet18``: ImageNet normalisation (mean 0.485, 0.456, 0.406; sd 0.229, 0.224, 0.225). Last block
  (the Grad-CAM layer and, with ``model.freeze: paper``, what trains besides ``fc``): ``net.layer4``, its
  last stage of two residual blocks, a 7 x 7 grid at 224 px.
- ``googlenet``: torchvision's ImageNet weights were trained on inputs scaled to [-1, 1] (torchvision's
  ``transform_input`` turns ImageNet-normalised input back into that), so the normalisation here is mean
  0.5, sd 0.5 and ``transform_input`` is off: the same input reaches the first convolution. Last block:
  ``net.inception5b`` (7 x 7 at 224 px).

Weights (``headmri.pretrained.torchvision_weights``): ``model.checkpoint`` or, with ``model.pretrained``,
torch's hub cache; never a download. Without either: torchvision's random initialisation, said in the log.
The randomisation test (``headmri.explain.sanity``) re-initialises the last two blocks
(``randomisable_modules``) with torchvision's own initialisation of each family (``reinitialise``).
torchvision is imported only when a network is built, so importing this module costs nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from headmri.encoder_names import GOOGLENET, INPUT_SIZES, RESNET18
from headmri.errors import InputError
from headmri.models.freezing import FrozenNormsMixin
from headmri.pretrained import torchvision_weights

log = logging.getLogger(__name__)

INPUT_SIZE = INPUT_SIZES[GOOGLENET]  # ResNet18's too
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Family:
    """What differs between the two networks: the last blocks (output backwards), normalisation, init."""

    last_blocks: tuple[str, ...]  # the last two blocks, last first; the first is the Grad-CAM layer
    mean: tuple[float, ...]
    std: tuple[float, ...]
    init: str  # torchvision's initialisation rule: "resnet" or "googlenet"


FAMILIES = {
    RESNET18: Family(("net.layer4.1", "net.layer4.0"), IMAGENET_MEAN, IMAGENET_STD, "resnet"),
    GOOGLENET: Family(("net.inception5b", "net.inception5a"), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "googlenet"),
}
TARGET_LAYERS = {RESNET18: "net.layer4", GOOGLENET: "net.inception5b"}


def _network(encoder: str, num_classes: int, *, init: bool) -> nn.Module:
    import torchvision.models as tvm  # only when a torchvision encoder is built

    if encoder == RESNET18:
        net = tvm.resnet18(weights=None)
    else:
        net = tvm.googlenet(weights=None, aux_logits=False, transform_input=False, init_weights=init)
    net.fc = nn.Linear(net.fc.in_features, num_classes)
    return net


class TorchvisionCNN(FrozenNormsMixin, nn.Module):
    """``net(normalise(x))`` with ``net`` torchvision's network; grey (B, 1, S, S) in 0..1 or normalised (B, 3, S, S)."""

    kind = "slices"

    def __init__(self, encoder: str, classes: Sequence[str], *, device: str | torch.device | None = None):
        super().__init__()
        if encoder not in FAMILIES:
            raise ValueError(f"not a torchvision encoder: {encoder!r}; known: {sorted(FAMILIES)}")
        family = FAMILIES[encoder]
        with torch.device(device or "cpu"):
            self.net = _network(encoder, len(classes), init=str(device) != "meta")
        self.encoder = encoder
        self.classes = tuple(classes)
        self.input_size = INPUT_SIZE
        self.mean, self.std = family.mean, family.std
        self.target_layer_name = TARGET_LAYERS[encoder]
        self.paper_trainable = (TARGET_LAYERS[encoder], "net.fc")  # model.freeze: paper (headmri.models.freezing)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            x = (x - mean) / std  # broadcast: the grey slice in 3 channels, each normalised
        elif x.shape[1] != 3:
            raise ValueError(f"{self.encoder} takes grey slices (B, 1, S, S) or normalised (B, 3, S, S), got {x.shape[1]} channels")
        return self.net(x)

    def meta(self) -> dict[str, Any]:
        """What ``load_trained`` needs to rebuild this model, and what its users need to feed it."""
        return {"kind": self.kind, "encoder": self.encoder, "classes": list(self.classes), "input_size": self.input_size,
                "mean": list(self.mean), "std": list(self.std), "target_layer_name": self.target_layer_name}

    def randomisable_modules(self, blocks: int) -> list[str]:
        """The randomisation test's modules, from the output backwards: the last ``blocks`` blocks (at most
        two: ResNet18's two residual blocks of layer4, GoogLeNet's inception 5b and 5a) and the classifier."""
        return list(FAMILIES[self.encoder].last_blocks[:blocks]) + ["net.fc"]

    def reinitialise(self, module: nn.Module) -> None:
        """torchvision's initialisation of this family, applied to ``module``: ResNet: Kaiming normal (fan
        out) convolutions, unit batch norms, PyTorch's default linear layer; GoogLeNet: truncated normal
        (sd 0.01, cut at +-2) convolutions and linear layers, unit batch norms. Running statistics reset."""
        rule = FAMILIES[self.encoder].init
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
                m.reset_running_stats()
            elif rule == "googlenet" and isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                m.reset_parameters()


def build(encoder: str, classes: Sequence[str], *, pretrained: bool, checkpoint: str | Path | None) -> TorchvisionCNN:
    """The classifier with ImageNet weights from a local file or torch's cache (``torchvision_weights``), or
    torchvision's random initialisation when ``pretrained`` is false and no checkpoint is given."""
    path = torchvision_weights(encoder, checkpoint, pretrained)  # before building: a missing file fails at once
    model = TorchvisionCNN(encoder, classes)
    if path is None:
        log.info("%s: model.pretrained is false and model.checkpoint is null: RANDOM INITIALISATION (torchvision's), "
                 "no ImageNet weights", encoder)
        return model
    load_imagenet(model, path)
    log.info("%s: ImageNet weights from %s; classifier replaced for %d classes %s", encoder, path, len(model.classes),
             list(model.classes))
    return model


def load_imagenet(model: TorchvisionCNN, path: str | Path) -> None:
    """Load torchvision's ImageNet state dict (plain, or under ``state_dict``; ``module.`` prefixes allowed)
    into ``model.net``, all but the classifier (and GoogLeNet's auxiliary heads); anything else that does not
    fit is an InputError naming the file and the keys."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable or not a torch file
        raise InputError(f"cannot read {model.encoder}'s ImageNet weights ({type(exc).__name__}: {exc})", path=path) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InputError(f"not a state dict of {model.encoder} (a {type(state).__name__})", path=path)
    state = {k.removeprefix("module."): v for k, v in state.items()
             if not k.removeprefix("module.").startswith(("fc.", "aux1.", "aux2."))}
    try:
        missing, unexpected = model.net.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise InputError(f"the weights do not fit torchvision's {model.encoder}: {exc}", path=path) from exc
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise InputError(f"the weights do not fit torchvision's {model.encoder}: missing keys {missing[:10]}, "
                         f"unexpected keys {list(unexpected)[:10]}", path=path)
