"""Grad-CAM and attention rollout: raw maps that match pytorch-grad-cam before its scaling, explicit targets."""

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from headmri.errors import ConfigError
from headmri.explain.gradcam import raw_gradcam, resolve_module, target_index, upsample, vit_token_grid
from headmri.explain.maps import slice_maps, volume_map
from headmri.explain.rollout import attention_rollout
from headmri.models import build_architecture

CLASSES = ("HC", "migraine")


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    model = build_architecture("vit_tiny_demo", CLASSES).eval()
    # a random head gives near-zero logits; scale it so gradients are far from rounding noise
    with torch.no_grad():
        model.head.weight.mul_(20)
    return model


@pytest.fixture(scope="module")
def images(vit):
    generator = torch.Generator().manual_seed(1)
    return torch.randn(5, 3, vit.input_size, vit.input_size, generator=generator)


def _autograd_gradcam(model, images, target):
    """Grad-CAM written out with plain autograd (Selvaraju et al.): the reference for the raw maps."""
    store = {}
    layer = model.trunk.blocks[-1].norm1
    handle = layer.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    logits = model(images)
    handle.remove()
    activations = store["a"]
    grads = torch.autograd.grad(logits[:, target].sum(), activations)[0]
    patches, patch_grads = activations[:, 1:], grads[:, 1:]  # drop the CLS token
    weights = patch_grads.mean(dim=1, keepdim=True)  # mean gradient over the token grid, per channel
    cam = torch.relu((weights * patches).sum(dim=-1))
    return cam.reshape(len(images), *model.patch_grid).detach().numpy()


def _library_scaling(raw, target_size):
    """pytorch-grad-cam's steps after the raw map: resize + min-max per image, clip at 0, min-max again."""
    return scale_cam_image(np.maximum(scale_cam_image(raw, target_size), 0))


def test_raw_maps_equal_pytorch_grad_cam_before_its_scaling(vit, images):
    layer = resolve_module(vit, "trunk.blocks[-1].norm1")
    reshape = vit_token_grid(1, vit.patch_grid)
    raw = raw_gradcam(vit, images, 1, layer, reshape, batch_size=2)
    assert raw.shape == (5, 14, 14)
    np.testing.assert_allclose(raw, _autograd_gradcam(vit, images, 1), rtol=1e-4, atol=1e-7)
    # the library's own output is exactly our raw maps put through its two scaling steps
    with GradCAM(vit, [layer], reshape_transform=reshape) as stock:
        scaled = stock(images, [ClassifierOutputTarget(1)] * len(images))
    size = (vit.input_size, vit.input_size)
    np.testing.assert_allclose(scaled, _library_scaling(raw, size), atol=1e-6)
    # raw maps keep differences between images that min-max scaling removes
    assert raw.max(axis=(1, 2)).std() > 0 and np.allclose(scaled.max(axis=(1, 2)), 1.0, atol=1e-3)


def test_the_target_class_is_explicit_not_the_argmax(vit, images):
    layer = resolve_module(vit, "trunk.blocks[-1].norm1")
    reshape = vit_token_grid(1, vit.patch_grid)
    for target in (0, 1):
        raw = raw_gradcam(vit, images, target, layer, reshape)
        np.testing.assert_allclose(raw, _autograd_gradcam(vit, images, target), rtol=1e-4, atol=1e-7)
    assert not np.allclose(raw_gradcam(vit, images, 0, layer, reshape), raw_gradcam(vit, images, 1, layer, reshape))
    assert target_index(CLASSES, "migraine") == 1
    with pytest.raises(ConfigError, match="'APTH' is not a class"):
        target_index(CLASSES, "APTH")


def test_model_state_is_restored(vit, images):
    vit.train()
    flags = [p.requires_grad for p in vit.parameters()]
    raw_gradcam(vit, images[:2], 1, vit.trunk.blocks[-1].norm1, vit_token_grid(1, vit.patch_grid))
    assert vit.training and [p.requires_grad for p in vit.parameters()] == flags
    assert not vit.trunk.blocks[-1].norm1._forward_hooks  # no hook left behind
    assert all(p.grad is None for p in vit.parameters())  # no weight gradients were computed
    vit.eval()


def test_layer_paths_resolve_without_eval(vit):
    assert resolve_module(vit, "trunk.blocks[-1].norm1") is vit.trunk.blocks[3].norm1
    assert resolve_module(vit, "trunk.blocks[0]") is vit.trunk.blocks[0]
    for bad, message in [
        ("trunk.blocks[9].norm1", "nothing at 'trunk.blocks\\[9\\]'"),
        ("trunk.block.norm1", "children there are"),
        ("trunk.blocks[-1].norm1; import os", "cannot parse"),
        ("__import__('os')", "cannot parse"),
        ("trunk.blocks[-1].norm1.weight", "not a layer|nothing at"),
    ]:
        with pytest.raises(ConfigError, match=message):
            resolve_module(vit, bad)


def test_slice_maps_are_raw_non_negative_and_at_the_input_size(vit, images):
    maps = slice_maps(vit, images, method="gradcam", target=1, target_layer="trunk.blocks[-1].norm1", batch_size=3)
    assert maps.shape == (5, vit.input_size, vit.input_size) and maps.min() >= 0
    raw = _autograd_gradcam(vit, images, 1)
    np.testing.assert_allclose(maps, upsample(raw, (vit.input_size,) * 2), rtol=1e-4, atol=1e-7)
    # bilinear upsampling (half-pixel centres): a patch's token value sits in the middle of its 16 x 16 block
    one_hot = np.zeros((1, 7, 7), np.float32)
    one_hot[0, 2, 5] = 1.0
    up = upsample(one_hot, (112, 112))[0]
    assert up[2 * 16 + 7 : 2 * 16 + 9, 5 * 16 + 7 : 5 * 16 + 9].min() > 0.9 and up[:16].max() == 0
    assert np.unravel_index(up.argmax(), up.shape)[0] // 16 == 2 and np.unravel_index(up.argmax(), up.shape)[1] // 16 == 5


def test_attention_rollout_matches_a_direct_computation(vit, images):
    attentions = []

    def keep(module, inputs, _output):
        x = inputs[0]
        b, n, _ = x.shape
        qkv = module.qkv(x).reshape(b, n, 3, module.num_heads, module.head_dim).permute(2, 0, 3, 1, 4)
        q, k, _v = qkv.unbind(0)
        attentions.append((q * module.scale @ k.transpose(-2, -1)).softmax(-1))

    handles = [block.attn.register_forward_hook(keep) for block in vit.trunk.blocks]
    with torch.no_grad():
        vit(images)
    for handle in handles:
        handle.remove()
    tokens = 1 + vit.patch_grid[0] * vit.patch_grid[1]
    rolled = torch.eye(tokens)
    for attention in attentions:
        a = 0.5 * attention.mean(1) + 0.5 * torch.eye(tokens)
        rolled = (a / a.sum(-1, keepdim=True)) @ rolled
    expected = rolled[:, 0, 1:].reshape(-1, *vit.patch_grid).numpy()
    fused = [block.attn.fused_attn for block in vit.trunk.blocks]
    got = attention_rollout(vit, images, 1, vit.patch_grid, batch_size=2)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert [block.attn.fused_attn for block in vit.trunk.blocks] == fused  # switched back
    assert not any(block.attn.attn_drop._forward_hooks for block in vit.trunk.blocks)
    maps = slice_maps(vit, images, method="rollout", target=1, target_layer="ignored", batch_size=2)
    assert maps.shape == (5, vit.input_size, vit.input_size)


class _Tiny3D(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, 6, 3, stride=2, padding=1))
        self.head = torch.nn.Linear(6, 2)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3, 4)))


def test_3d_gradcam_matches_pytorch_grad_cam_and_fills_the_output_grid():
    torch.manual_seed(0)
    model = _Tiny3D().eval()
    volume = torch.randn(2, 1, 8, 10, 6)
    layer = resolve_module(model, "features[-1]")
    raw = raw_gradcam(model, volume, 1, layer)
    assert raw.shape == (2, 4, 5, 3)
    with GradCAM(model, [layer]) as stock:
        scaled = stock(volume, [ClassifierOutputTarget(1)] * 2)
    target_size = (6, 10, 8)  # pytorch-grad-cam's (depth, width, height) order for 3D inputs
    np.testing.assert_allclose(scaled, _library_scaling(raw, target_size), atol=1e-6)
    full = volume_map(model, volume[:1], target=1, target_layer="features[-1]", output_shape=(16, 20, 12))
    assert full.shape == (16, 20, 12) and full.min() >= 0
    np.testing.assert_allclose(full, upsample(raw[:1], (16, 20, 12))[0], rtol=1e-5, atol=1e-9)


def test_gradcam_of_the_demo_cnn_equals_autograd_on_its_feature_grid():
    torch.manual_seed(0)
    cnn = build_architecture("cnn_demo", CLASSES)
    cnn(torch.rand(8, 1, 64, 64))  # move the batch-norm statistics off their initial values
    cnn.eval()
    grey = torch.rand(4, 1, 64, 64, generator=torch.Generator().manual_seed(2))
    store = {}
    handle = cnn.get_submodule(cnn.target_layer_name).register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    logits = cnn(grey)
    handle.remove()
    grads = torch.autograd.grad(logits[:, 1].sum(), store["a"])[0]
    expected = torch.relu((grads.mean(dim=(2, 3), keepdim=True) * store["a"]).sum(dim=1)).detach().numpy()
    assert expected.shape == (4, 8, 8) and expected.max() > 0
    maps = slice_maps(cnn, grey, method="gradcam", target=1, target_layer=None, batch_size=3)
    np.testing.assert_allclose(maps, upsample(expected, (64, 64)), rtol=1e-4, atol=1e-6)
    other = slice_maps(cnn, grey, method="gradcam", target=0, target_layer=None, batch_size=3)
    assert not np.allclose(maps, other)  # class-specific: the other class's gradients give another map
