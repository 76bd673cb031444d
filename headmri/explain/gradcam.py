"""Grad-CAM with raw (unscaled) maps, through pytorch-grad-cam: the ``gradcam`` explanation method.

pytorch-grad-cam computes the Grad-CAM of Selvaraju et al. (channel weights = mean gradient over the
spatial grid, map = ReLU(sum_c w_c A_c)), then min-max scales every image on its own
(``scale_cam_image``). That scaling makes a weak slice look as hot as the strongest one, which destroys
the comparison across slices and subjects that a regional maximum needs. ``RawGradCAM`` keeps the
library's hooks and weights and only drops the scaling: it returns ReLU(sum_c w_c A_c) on the layer's own
grid (14 x 14 tokens for a ViT-B/16 at 224, the feature grid for a 3D CNN). Upsampling to the image is a
separate, explicit step (``upsample``).

Two things the library does not do and we need:
- an explicit target class, always (the disease class), never the arg-max of the output; one per image;
- a cheap backward: every parameter is frozen and the target layer's output is made the only tensor that
  needs a gradient, so autograd records nothing before that layer (no activations kept for the first
  11 blocks of a ViT-B) and the backward pass stops there. The gradient at the layer is the same.

``GradCAMMethod`` is the method behind ``explain.method: gradcam`` (interface: ``headmri.explain.methods``).
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from headmri.errors import ConfigError
from headmri.explain.methods import MapMethod, as_targets, target_index, token_layout  # noqa: F401  (target_index: re-exported)

_PATH_SYNTAX = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*|\[-?[0-9]+\])*")
_PATH_TOKEN = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_]*)|\[(-?[0-9]+)\]")


def resolve_module(root: torch.nn.Module, path: str) -> torch.nn.Module:
    """The sub-module at a dotted/indexed path such as ``trunk.blocks[-1].norm1`` (parsed, never eval'd)."""
    if not _PATH_SYNTAX.fullmatch(path):
        raise ConfigError(f"cannot parse the layer path {path!r}: use attribute names, dots and [index], e.g. trunk.blocks[-1].norm1")
    module: object = root
    walked = ""
    for match in _PATH_TOKEN.finditer(path):
        name, index = match.groups()
        step = name if name is not None else f"[{index}]"
        here = f"{walked}.{step}" if walked and name is not None else walked + step
        try:
            if name is not None:
                if not isinstance(module, torch.nn.Module) or name not in dict(module.named_children()):
                    raise KeyError(name)
                module = getattr(module, name)
            else:
                module = module[int(index)]  # ModuleList / Sequential indexing, negative indices included
        except (KeyError, IndexError, TypeError):
            children = sorted(dict(module.named_children())) if isinstance(module, torch.nn.Module) else []
            raise ConfigError(
                f"the layer path {path!r} does not exist in {type(root).__name__}: nothing at {here!r}"
                + (f"; children there are {children}" if children else "")
            ) from None
        walked = here
    if not isinstance(module, torch.nn.Module):
        raise ConfigError(f"the layer path {path!r} names a {type(module).__name__}, not a layer")
    return module


def vit_token_grid(n_prefix_tokens: int, grid: tuple[int, int]) -> Callable[[torch.Tensor], torch.Tensor]:
    """A reshape transform for pytorch-grad-cam: (B, prefix + gh*gw, C) tokens -> (B, C, gh, gw).

    The CLS (and any register) tokens are dropped: they have no place in the image.
    """
    gh, gw = grid

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, n_prefix_tokens:, :]
        if patches.shape[1] != gh * gw:
            raise ValueError(f"expected {gh}x{gw}={gh * gw} patch tokens after {n_prefix_tokens} prefix tokens, got {patches.shape[1]}")
        return patches.reshape(tokens.shape[0], gh, gw, tokens.shape[2]).permute(0, 3, 1, 2)

    return reshape


class RawGradCAM(GradCAM):
    """pytorch-grad-cam's GradCAM without ``scale_cam_image``: raw ReLU maps on the layer's grid."""

    def compute_cam_per_layer(self, input_tensor, targets, eigen_smooth):
        activations = [a.cpu().data.numpy() for a in self.activations_and_grads.activations]
        grads = [g.cpu().data.numpy() for g in self.activations_and_grads.gradients]
        cams = []
        for layer, layer_activations, layer_grads in zip(self.target_layers, activations, grads):
            cam = self.get_cam_image(input_tensor, layer, targets, layer_activations, layer_grads, eigen_smooth)
            cams.append(np.maximum(cam, 0)[:, None])
        return cams

    def aggregate_multi_layers(self, cam_per_target_layer):
        return np.mean(np.concatenate(cam_per_target_layer, axis=1), axis=1)


@contextlib.contextmanager
def gradient_only_from(model: torch.nn.Module, layer: torch.nn.Module) -> Iterator[None]:
    """Freeze every parameter and make ``layer``'s output a fresh leaf that needs a gradient.

    Autograd then keeps nothing before the layer, and the backward pass stops at it. The hook is
    prepended so pytorch-grad-cam's own hooks (which store the activation and hook its gradient) see
    the new leaf.
    """

    def make_leaf(_module, _inputs, output):
        if not isinstance(output, torch.Tensor):
            raise ConfigError(f"the Grad-CAM target layer {type(layer).__name__} returns {type(output).__name__}, not a tensor")
        return output.detach().requires_grad_(True)

    flags = [(p, p.requires_grad) for p in model.parameters()]
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    handle = layer.register_forward_hook(make_leaf, prepend=True)
    try:
        with torch.enable_grad():
            yield
    finally:
        handle.remove()
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def raw_gradcam(
    model: torch.nn.Module,
    inputs: torch.Tensor | np.ndarray,
    target: int | Sequence[int] | torch.Tensor,
    layer: torch.nn.Module,
    reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 32,
) -> np.ndarray:
    """Raw Grad-CAM maps for class index ``target`` (one for all inputs, or one per input): (N, gh, gw)
    for images, (N, d, h, w) for volumes.

    ``inputs`` are what the model takes (grey slices in 0..1, or normalised tensors); they are sent to the
    model's device chunk by chunk.
    """
    targets_all = as_targets(target, len(inputs)).tolist()
    device = next(model.parameters()).device
    out: list[np.ndarray] = []
    was_training = model.training
    with gradient_only_from(model, layer):
        cam = RawGradCAM(model, [layer], reshape_transform=reshape_transform)
        try:
            for start in range(0, len(inputs), batch_size):
                chunk = torch.as_tensor(inputs[start : start + batch_size]).to(device, torch.float32)
                targets = [ClassifierOutputTarget(t) for t in targets_all[start : start + batch_size]]
                out.append(np.asarray(cam(chunk, targets), dtype=np.float32))
        finally:
            cam.activations_and_grads.release()
            model.train(was_training)
    if not out:
        return np.zeros((0,), np.float32)
    return np.concatenate(out, axis=0)


def upsample(maps: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Resize raw maps (N, *grid) to (N, *size), bilinear (2D) or trilinear (3D), half-pixel centres.

    The same sampling as pytorch-grad-cam's cv2/zoom resize up to edge handling, but without scaling;
    interpolation keeps the maps non-negative.
    """
    size = tuple(int(s) for s in size)
    if len(size) not in (2, 3) or maps.ndim != len(size) + 1:
        raise ValueError(f"cannot resize maps of shape {maps.shape} to {size}")
    mode = "bilinear" if len(size) == 2 else "trilinear"
    tensor = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))[:, None]
    return torch.nn.functional.interpolate(tensor, size=size, mode=mode, align_corners=False)[:, 0].numpy()


class GradCAMMethod(MapMethod):
    """Raw Grad-CAM on one layer (default: the model's ``target_layer_name``, ``trunk.blocks[-1].norm1`` for
    the ViTs), its token grid upsampled bilinearly to the slice size. Class-specific: the gradients are
    those of the target class's logit."""

    name = "gradcam"
    class_specific = True
    model_kinds = ("slices", "volume")
    uses_target_layer = True

    def __init__(self, model: torch.nn.Module, *, batch_size: int = 32, target_layer: str | None = None, **options: Any):
        super().__init__(model, batch_size=batch_size, target_layer=target_layer or getattr(model, "target_layer_name", None),
                         **options)
        if self.target_layer is None:
            raise ConfigError(f"Grad-CAM needs a target layer; {type(model).__name__} names none (explain.target_layer)")
        self.layer = resolve_module(model, self.target_layer)

    def slice_maps(self, slices, targets) -> np.ndarray:
        # A ViT's layer gives tokens, reshaped to their patch grid; a CNN's layer gives a feature grid already.
        reshape = vit_token_grid(*token_layout(self.model)) if hasattr(self.model, "trunk") else None
        coarse = raw_gradcam(self.model, slices, as_targets(targets, len(slices)), self.layer, reshape, self.batch_size)
        if coarse.ndim != 3:
            raise ConfigError(f"Grad-CAM on {self.target_layer!r} gave maps of shape {coarse.shape}; a slice model's layer "
                              "must give (N, h, w) maps")
        return upsample(coarse, slices.shape[-2:])

    def volume_map(self, volume: torch.Tensor, target: int, output_shape: Sequence[int]) -> np.ndarray:
        """Grad-CAM of a 3D CNN for one model-ready volume (1, 1, D, H, W), upsampled to ``output_shape``.

        The network's input grid and the output grid cover the same field of view (the input is a
        resampling of the MNI grid), so a trilinear resize with half-voxel centres maps one onto the other.
        """
        coarse = raw_gradcam(self.model, volume, target, self.layer, reshape_transform=None, batch_size=1)
        if coarse.ndim != 4:
            raise ConfigError(f"Grad-CAM on {self.target_layer!r} gave maps of shape {coarse.shape}; a 3D CNN layer gives "
                              "(N, d, h, w)")
        return upsample(coarse, output_shape)[0]
