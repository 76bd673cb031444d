"""The model-parameter randomisation test (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

An explanation that is evidence about what a model learnt must change when what it learnt is destroyed.
For a fold's trained model, the last ``RANDOMISED_BLOCKS`` blocks and the head are re-initialised with
the architecture's own initialisation (seeded, drawn on the CPU so that every device gets the same
weights), the same method scores the same patients' regions again, and the two region profiles are
compared with Spearman's rank correlation, per patient, then the median over patients:

- a correlation near 1: the region ranking does not depend on the re-initialised weights (an edge
  detector, a region-size effect, the input image itself) -- the check **fails**;
- a low correlation: the ranking rests on the learnt weights -- it **passes** (median below
  ``explain.sanity_threshold``, 0.5 by default).

Which modules are re-initialised (``reinitialised_modules``):
- a model that names its own (``randomisable_modules(blocks)``, re-initialised by its ``reinitialise``):
  torchvision's GoogLeNet and ResNet18 (``headmri.models.torchvision_cnn``): their last 2 blocks (inception
  5b and 5a; the two residual blocks of layer4) and ``fc``, with torchvision's initialisation of each;
- a ViT classifier (``model.trunk.blocks``): the last 2 transformer blocks, the trunk's final norms and
  the classifier head; timm's own ViT initialisation for the blocks (``get_init_weights_vit`` of the
  trunk's ``weight_init_mode``: truncated normal 0.02 for linear layers, unit layer norms), PyTorch's
  default ``nn.Linear`` initialisation for the head (the one the classifier was built with);
- the 3D ResNet baseline (``model.backbone`` with ``layer1..4``): its last 2 residual blocks (layer4)
  and its ``fc``, with torchvision's VideoResNet rules (Kaiming normal fan-out for convolutions, unit
  batch norms with fresh running statistics, N(0, 0.01) for the linear layer);
- a plain CNN (``model.features``, an ``nn.Sequential`` of stages, and a ``head``): its last 2 stages
  with parameters and the head, with PyTorch's default initialisation (``reset_parameters``, which also
  resets batch-norm running statistics), the one such a network is built with;
- any other model: its ``head`` (or ``fc``).

The explain job (headmri.explain.job, ``explain.sanity_check``) runs it on up to ``explain.sanity_patients``
of the fold's explained patients and records the result in explain.json; ``headmri.explain.sanity_table``
merges those into ``tables/sanity.tsv``.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn

from headmri.models.placement import place

log = logging.getLogger(__name__)

RANDOMISED_BLOCKS = 2
DEFAULT_THRESHOLD = 0.5
DEFAULT_REPEATS = 3
TEST_NAME = "model-parameter randomisation (Adebayo et al. 2018)"


def _children(module: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    return [(f"{prefix}.{name}", child) for name, child in module.named_children()]


def _has_parameters(module: nn.Module | None) -> bool:
    return module is not None and any(True for _ in module.parameters())


def reinitialised_modules(model: nn.Module, blocks: int = RANDOMISED_BLOCKS) -> list[str]:
    """The dotted names of the modules the randomisation test re-initialises, from the output backwards."""
    if blocks < 0:
        raise ValueError("blocks must be 0 or more")
    own = getattr(model, "randomisable_modules", None)
    if callable(own):
        return list(own(blocks))
    names: list[str] = []
    trunk = getattr(model, "trunk", None)
    backbone = getattr(model, "backbone", None)
    if trunk is not None and hasattr(trunk, "blocks"):
        count = len(trunk.blocks)
        names += [f"trunk.blocks.{i}" for i in range(count - 1, max(count - blocks, 0) - 1, -1)]
        names += [f"trunk.{n}" for n in ("norm", "fc_norm") if _has_parameters(getattr(trunk, n, None))]
    elif backbone is not None and all(hasattr(backbone, f"layer{i}") for i in range(1, 5)):
        residual = [item for i in range(1, 5) for item in _children(getattr(backbone, f"layer{i}"), f"backbone.layer{i}")]
        names += [name for name, _ in residual[::-1][:blocks]]
        if _has_parameters(getattr(backbone, "fc", None)):
            names.append("backbone.fc")
        return names
    elif isinstance(getattr(model, "features", None), nn.Sequential):  # a plain CNN: its parameterised stages
        stages = [name for name, child in _children(model.features, "features") if _has_parameters(child)]
        names += stages[::-1][:blocks]
    for head in ("head", "fc"):
        if _has_parameters(getattr(model, head, None)):
            names.append(head)
            break
    if not names:
        raise ValueError(f"{type(model).__name__} has neither transformer blocks, residual stages nor a head to re-initialise")
    return names


def _init_vit(trunk: nn.Module, module: nn.Module, name: str) -> None:
    from timm.models._manipulate import named_apply
    from timm.models.vision_transformer import get_init_weights_vit

    named_apply(get_init_weights_vit(getattr(trunk, "weight_init_mode", "") or "", 0.0), module, name=name)


def _init_video_resnet(module: nn.Module) -> None:
    for m in module.modules():  # torchvision.models.video.resnet.VideoResNet.__init__'s rules
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
            m.reset_running_stats()
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.constant_(m.bias, 0)


def _reset(module: nn.Module) -> None:
    for m in module.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()


def randomised_copy(model: nn.Module, *, seed: int = 0, blocks: int = RANDOMISED_BLOCKS) -> tuple[nn.Module, list[str]]:
    """A copy of ``model`` with its last ``blocks`` blocks and its head re-initialised (see the module
    docstring), on the model's device and in eval mode, and the names of the modules re-initialised.
    The original is not touched; the same seed gives the same weights on every device."""
    names = reinitialised_modules(model, blocks)
    device = next(model.parameters()).device
    randomised = copy.deepcopy(model).cpu()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for name in names:
            module = randomised.get_submodule(name)
            if callable(getattr(randomised, "reinitialise", None)):
                randomised.reinitialise(module)
            elif name.startswith("trunk."):
                _init_vit(randomised.trunk, module, name)
            elif name.startswith("backbone."):
                _init_video_resnet(module)
            else:
                _reset(module)
    return place(randomised, device).eval(), names


def spearman(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Spearman's rank correlation of two region profiles (ties averaged; regions where either is NaN
    left out); NaN with fewer than 3 regions or when either profile is constant."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    keep = ~(np.isnan(a) | np.isnan(b))
    if keep.sum() < 3:
        return float("nan")
    if np.ptp(a[keep]) == 0 or np.ptp(b[keep]) == 0:
        return float("nan")
    return float(stats.spearmanr(a[keep], b[keep]).statistic)


def summarise(trained: Mapping[str, np.ndarray], randomised: Sequence[Mapping[str, np.ndarray]], *,
              threshold: float = DEFAULT_THRESHOLD) -> dict:
    """Spearman correlations between the trained model's region scores and those of each randomised model
    (one mapping patient -> scores per re-initialisation), their median over every (re-initialisation,
    patient) pair, and whether it is below ``threshold`` (passed; None when no correlation is defined).
    ``spearman_per_patient`` holds each patient's median over the re-initialisations, ``spearman_per_seed``
    each re-initialisation's median over the patients."""
    table = pd.DataFrame([[spearman(trained[pid], scores[pid]) for pid in scores] for scores in randomised],
                         columns=list(randomised[0]) if randomised else [])
    values = table.to_numpy().ravel()
    defined = values[~np.isnan(values)]
    median = float(np.median(defined)) if defined.size else None

    def rounded(series):
        return [None if pd.isna(r) else round(float(r), 6) for r in series]

    return {
        "spearman": median,
        "threshold": float(threshold),
        "passed": None if median is None else bool(median < threshold),
        "spearman_per_patient": dict(zip(table.columns, rounded(table.median(axis=0)))),
        "spearman_per_seed": rounded(table.median(axis=1)),
    }


def randomisation_test(model: nn.Module, score: Callable[[nn.Module], Mapping[str, np.ndarray]], *, seed: int = 0,
                       repeats: int = DEFAULT_REPEATS, threshold: float = DEFAULT_THRESHOLD,
                       blocks: int = RANDOMISED_BLOCKS, trained: Mapping[str, np.ndarray] | None = None) -> dict:
    """The randomisation test of one method on one model.

    ``score(model)`` gives the region scores (patient -> one value per region, the same regions in the same
    order for every model) of the patients to compare; ``trained``: those of the trained model when they
    are already known (the explain job's main pass), else ``score(model)``. The model is re-initialised
    ``repeats`` times, with seeds ``seed``, ``seed + 1``, ...: one random model is one draw, and the
    correlation between a trained and a random model's maps varies a lot from draw to draw (random ViT
    maps are not unstructured), so the verdict is the median over draws and patients. Returns
    ``summarise``'s record plus the modules re-initialised, the seeds and the seconds the randomised
    passes took.
    """
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    started = time.perf_counter()
    scores, names = [], []
    for draw in range(repeats):
        randomised, names = randomised_copy(model, seed=seed + draw, blocks=blocks)
        scores.append(score(randomised))
        del randomised
    seconds = time.perf_counter() - started
    record = summarise(trained if trained is not None else score(model), scores, threshold=threshold)
    record.update({"test": TEST_NAME, "randomised": names, "seeds": [seed + d for d in range(repeats)],
                   "n_patients": len(scores[0]), "seconds": round(seconds, 3)})
    log.info("randomisation test: median Spearman %s over %d patients x %d re-initialisations of %s -> %s, %.1f s",
             "undefined" if record["spearman"] is None else f"{record['spearman']:.3f}", len(scores[0]), repeats, names,
             {True: "passed", False: "FAILED: the maps do not depend on the learnt weights", None: "undefined"}[record["passed"]],
             seconds)
    return record
