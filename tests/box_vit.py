"""A tiny ViT trained in about a second on 32 x 32 grey images whose two classes differ only in one box:
the shared known-answer model of the explanation tests (methods and the randomisation test)."""

from __future__ import annotations

import torch
from timm.models.vision_transformer import VisionTransformer

from headmri.models.classifier import Classifier

CLASSES = ("HC", "migraine")
S = 32
BOX = (slice(8, 16), slice(16, 24))  # the 8 x 8 pixels (2 x 2 patches) where the classes differ


def box_images(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = 0.5 + 0.1 * torch.randn(n, 1, S, S, generator=generator)
    y = torch.randint(0, 2, (n,), generator=generator)
    x[y == 1, :, BOX[0], BOX[1]] += 0.3
    return x.clamp(0, 1), y


def train_box_vit() -> tuple[Classifier, torch.Tensor]:
    """The trained model (2 blocks, class-token pooling) and 64 fresh images' class-1 members, on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        trunk = VisionTransformer(img_size=S, patch_size=4, embed_dim=32, depth=2, num_heads=2, num_classes=0, global_pool="token")
        model = Classifier(trunk, encoder="toy", classes=CLASSES, input_size=S, mean=(0.5,) * 3, std=(0.25,) * 3)
        generator = torch.Generator().manual_seed(0)
        optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3)
        for _ in range(60):
            x, y = box_images(32, generator)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        model.eval()
        x, y = box_images(64, generator)
        with torch.no_grad():
            assert (model(x).argmax(1) == y).float().mean() == 1.0  # it learnt the box
        return model, x[y == 1]
    finally:
        torch.set_num_threads(threads)
