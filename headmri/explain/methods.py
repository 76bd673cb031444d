"""Explanation methods: one interface, one module per method, and the registry that names them.

Like pytorch-grad-cam's one class per method: a method is a class built around a trained classifier
(``method = method_class(name)(model, batch_size=..., target_layer=..., **options)``). Two kinds:

- **map methods** (``scores_regions = False``): ``method.slice_maps(slices, targets)`` takes a batch of
  grey slices (B, 1, S, S) in 0..1 and one target class index per slice, and returns raw maps (B, S, S)
  at the slice resolution (float32 numpy, no per-image scaling). The job puts them back on the MNI grid
  and reduces them per region (max or mean);
- **region methods** (``scores_regions = True``): ``method.region_values(slices, target, regions,
  reference)`` scores every atlas region of one subject directly (one number per region, no map
  statistic), from all the subject's slices, the regions cut into slice space and a neutral image
  per slice (``reference``: the training controls' mean slices; ``needs_reference``).

Adding a method: one module with a subclass of ``MapMethod`` or ``RegionMethod``, and one line in
``REGISTRY``. The registry holds ``module:Class`` paths, so reading the names (the typed config checks
``explain.method`` against them) imports neither torch nor the methods.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np

from headmri.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from headmri.explain.occlusion import SliceRegions

REGISTRY: dict[str, str] = {
    "gradcam": "headmri.explain.gradcam:GradCAMMethod",  # Selvaraju et al. 2017 on trunk.blocks[-1].norm1 (the paper)
    "rollout": "headmri.explain.rollout:AttentionRollout",  # Abnar & Zuidema 2020, class-agnostic
    "chefer": "headmri.explain.chefer:GradientWeightedRollout",  # Chefer et al. 2021b, class-specific
    "occlusion": "headmri.explain.occlusion:RegionOcclusion",  # atlas regions replaced by the controls' mean
}
NAMES: tuple[str, ...] = tuple(REGISTRY)


def check_name(method: str) -> str:
    """``method`` if the registry knows it, else a ConfigError that lists the methods there are."""
    if method not in REGISTRY:
        raise ConfigError(f"unknown explanation method {method!r} (config explain.method); known methods: {', '.join(NAMES)}")
    return method


def method_class(method: str) -> type["ExplanationMethod"]:
    """The class registered under ``method``."""
    module_name, _, class_name = REGISTRY[check_name(method)].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if getattr(cls, "name", None) != method:
        raise AssertionError(f"the registry entry {method!r} points at {cls.__name__}, whose name is {cls.name!r}")
    return cls


def check_method(method: str, model_kind: str) -> type["ExplanationMethod"]:
    """The method's class, after checking that it can explain a model of ``model_kind`` (slices/volume)."""
    cls = method_class(method)
    if model_kind not in cls.model_kinds:
        raise ConfigError(f"explain.method {method!r} explains {' or '.join(cls.model_kinds)} models, not a {model_kind!r} "
                          "model; the 3D baseline is explained with Grad-CAM")
    return cls


def create(method: str, model: "torch.nn.Module", **options: Any) -> "ExplanationMethod":
    """An instance of the method ``method`` for ``model``; ``options`` go to its constructor."""
    return method_class(method)(model, **options)


def as_targets(targets: "int | Sequence[int] | np.ndarray | torch.Tensor", n: int) -> "torch.Tensor":
    """One class index per slice, as a (n,) int64 tensor; a single int is used for every slice."""
    import torch

    if isinstance(targets, (int, np.integer)):
        return torch.full((n,), int(targets), dtype=torch.int64)
    out = torch.as_tensor(np.asarray(targets) if not isinstance(targets, torch.Tensor) else targets).to(torch.int64).reshape(-1)
    if out.numel() != n:
        raise ValueError(f"{out.numel()} targets for {n} slices: give one target class per slice, or one int for all")
    return out.cpu()


def target_index(classes: Sequence[str], target: str) -> int:
    """The output index of ``target``; an error if the model was not trained on that class."""
    if target not in classes:
        raise ConfigError(f"the target class {target!r} is not a class of this task/model; its classes are {list(classes)}")
    return list(classes).index(target)


def token_layout(model: "torch.nn.Module") -> tuple[int, tuple[int, int]]:
    """(number of prefix tokens, patch grid) of a classifier with a timm ViT ``trunk``."""
    trunk = getattr(model, "trunk", None)
    if trunk is None or not hasattr(trunk, "patch_embed"):
        raise ConfigError(f"{type(model).__name__} has no ViT trunk (expected model.trunk.patch_embed)")
    return int(getattr(trunk, "num_prefix_tokens", 1)), tuple(int(g) for g in trunk.patch_embed.grid_size)


def pooling(model: "torch.nn.Module") -> str:
    """How the ViT trunk pools its tokens for the head: ``token`` (the class token) or ``avg`` (the mean of
    the patch tokens), from timm's ``global_pool``; anything else is an error for the attention methods."""
    trunk = getattr(model, "trunk", None)
    pool = getattr(trunk, "global_pool", "token")
    if getattr(trunk, "attn_pool", None) is not None or pool not in ("token", "avg"):
        raise ConfigError(f"the attention methods follow a class token ('token') or the mean of the patch tokens ('avg'); "
                          f"this trunk pools with {pool!r}")
    if pool == "token" and int(getattr(trunk, "num_prefix_tokens", 1)) < 1:
        raise ConfigError("the trunk pools a class token but has no prefix token")
    return pool


class ExplanationMethod:
    """What every method has: a model, a batch size, its options, and what it is."""

    name: ClassVar[str]
    class_specific: ClassVar[bool]  # does the result change with the target class?
    scores_regions: ClassVar[bool] = False
    needs_reference: ClassVar[bool] = False  # needs the training controls' mean slices (region methods)
    model_kinds: ClassVar[tuple[str, ...]] = ("slices",)
    uses_target_layer: ClassVar[bool] = False

    def __init__(self, model: "torch.nn.Module", *, batch_size: int = 32, target_layer: str | None = None, **options: Any):
        if options:
            raise ConfigError(f"explanation method {self.name!r} takes no options {sorted(options)}")
        if int(batch_size) < 1:
            raise ConfigError(f"the batch size must be at least 1, got {batch_size}")
        self.model = model
        self.batch_size = int(batch_size)
        self.target_layer = target_layer

    @property
    def device(self) -> "torch.device":
        return next(self.model.parameters()).device


class MapMethod(ExplanationMethod):
    """A method that gives one raw map per slice."""

    def slice_maps(self, slices: "torch.Tensor | np.ndarray", targets: "int | Sequence[int] | torch.Tensor") -> np.ndarray:
        """Raw maps (B, S, S) for grey slices (B, 1, S, S) in 0..1 and one target class index per slice."""
        raise NotImplementedError


class AttentionMethod(MapMethod):
    """A map method that follows a ViT's attention: refused at construction, before any slice is read,
    for a model without a ViT trunk (e.g. ``cnn_demo``) or with a pooling it cannot follow."""

    def __init__(self, model: "torch.nn.Module", **kwargs: Any):
        super().__init__(model, **kwargs)
        try:
            token_layout(model)
        except ConfigError as error:
            raise ConfigError(f"explain.method {self.name!r} follows a Vision Transformer's attention; {error}. "
                              "Use gradcam or occlusion for this model") from None
        pooling(model)


class RegionMethod(ExplanationMethod):
    """A method that scores the atlas regions of one subject directly."""

    scores_regions = True

    def region_values(self, slices: "torch.Tensor | np.ndarray", target: int, regions: "SliceRegions",
                      reference: np.ndarray) -> dict[int, float]:
        """One value per region code of ``regions`` for all of one subject's slices (n, 1, S, S)."""
        raise NotImplementedError
