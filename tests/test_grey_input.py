"""Grey slices through the folded patch embedding give what the normalised three-channel copy gives."""

from __future__ import annotations

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from headmri.models import build_classifier
from headmri.models.grey_input import GreyPatchProjection

CLASSES = ("HC", "migraine")


def _normalised_colour(grey: torch.Tensor, model) -> torch.Tensor:
    mean = torch.tensor(model.mean).view(1, 3, 1, 1)
    std = torch.tensor(model.std).view(1, 3, 1, 1)
    return (grey.repeat(1, 3, 1, 1) - mean) / std


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_classifier("vit_tiny_demo", 2, classes=CLASSES).eval()


def test_grey_input_gives_the_logits_of_the_normalised_colour_copy(model):
    grey = torch.rand(4, 1, 112, 112, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        folded, colour = model(grey), model(_normalised_colour(grey, model))
    torch.testing.assert_close(folded, colour, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(folded, model(grey.repeat(1, 3, 1, 1)).detach(), atol=1e-3)  # normalisation matters


def test_training_on_grey_input_gets_the_gradients_of_the_colour_input(model):
    grey = torch.rand(3, 1, 112, 112, generator=torch.Generator().manual_seed(2))
    target = torch.tensor([0, 1, 1])
    grads = []
    for x in (grey, _normalised_colour(grey, model)):
        model.zero_grad()
        nn.functional.cross_entropy(model(x), target).backward()
        grads.append({name: p.grad.clone() for name, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-3, atol=1e-6, msg=name)


def test_the_state_dict_is_the_plain_vits(model):
    plain = VisionTransformer(img_size=112, patch_size=8, embed_dim=96, depth=4, num_heads=3, num_classes=0,
                              global_pool="token")
    keys = {f"trunk.{k}": v.shape for k, v in plain.state_dict().items()}
    ours = {k: v.shape for k, v in model.state_dict().items() if not k.startswith("head.")}
    assert ours == keys and ours["trunk.patch_embed.proj.weight"] == (96, 3, 8, 8)
    assert isinstance(model.trunk.patch_embed.proj, GreyPatchProjection)


def test_the_projection_holds_the_original_parameters_and_refuses_what_it_cannot_fold():
    conv = nn.Conv2d(3, 4, 2, stride=2)
    folded = GreyPatchProjection.adopt(conv, (0.1, 0.2, 0.3), (0.5, 0.6, 0.7))
    assert folded.weight is conv.weight and folded.bias is conv.bias
    assert GreyPatchProjection.adopt(folded, (0.1, 0.2, 0.3), (0.5, 0.6, 0.7)) is folded
    with pytest.raises(ValueError, match="1 grey channel"):
        folded(torch.rand(1, 2, 4, 4))
    with pytest.raises(ValueError, match="unpadded"):
        GreyPatchProjection.adopt(nn.Conv2d(3, 4, 2, stride=2, padding=1), (0, 0, 0), (1, 1, 1))
    with pytest.raises(ValueError, match="3 input channels"):
        GreyPatchProjection.adopt(conv, (0.5,), (0.2,))
    no_bias = GreyPatchProjection.adopt(nn.Conv2d(3, 4, 2, stride=2, bias=False), (0.1, 0.2, 0.3), (0.5, 0.6, 0.7))
    grey = torch.rand(2, 1, 4, 4)
    colour = (grey.repeat(1, 3, 1, 1) - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / torch.tensor([0.5, 0.6, 0.7]).view(1, 3, 1, 1)
    torch.testing.assert_close(no_bias(grey), no_bias(colour), rtol=1e-5, atol=1e-6)
