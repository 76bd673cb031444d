"""Gradient-weighted attention rollout (Chefer et al. 2021b): the ``chefer`` explanation method.

Chefer, Gur & Wolf, "Generic Attention-model Explainability for Interpreting Bi-Modal and Encoder-Decoder
Transformers", ICCV 2021: the simpler, widely used form of their "Transformer Interpretability Beyond
Attention Visualization" (CVPR 2021), without its layer-wise relevance propagation. For one target class
with score y (the target's logit):

    R = I                                    (tokens x tokens)
    for each block b, first to last:
        Ā_b = mean over heads of (∂y/∂A_b ⊙ A_b)⁺
        R   = R + Ā_b R

where A_b is the block's attention (after the softmax) and ⁺ keeps the positive part. The map is the row of
R that the head reads, over the patch tokens: the class token's row when the trunk pools the class token
(timm ``global_pool='token'``), the mean of the patch tokens' rows when it pools their mean (``'avg'``).

Unlike rollout, the attention is weighted by the gradient of the target class, so the map is
class-specific: attention that pushes the score of the target class up counts, attention that pushes it
down does not.

The attention probabilities are read, with their gradients, from each timm ``Attention`` block on its
explicit (non-fused) path, as ``rollout`` does: fused attention (F.scaled_dot_product_attention) never
materialises them, so it is switched off for the call and restored afterwards. The gradients are the
total derivatives of y with respect to each block's attention (every later block included): the input
is made to need a gradient, the parameters are frozen, so no weight gradient is computed.
"""

from __future__ import annotations

import numpy as np
import torch

from headmri.errors import ConfigError
from headmri.explain.methods import AttentionMethod, as_targets, pooling, token_layout
from headmri.explain.rollout import attention_modules, pooled_relevance, unfused_attention


def relevance_from_attentions(attentions: list[torch.Tensor], gradients: list[torch.Tensor]) -> torch.Tensor:
    """R after all blocks, (B, N, N), from each block's attention (B, heads, N, N) and its gradient."""
    if not attentions:
        raise ConfigError("gradient-weighted rollout found no attention maps")
    relevance = None
    for attention, gradient in zip(attentions, gradients):
        weighted = (gradient.float() * attention.float()).clamp(min=0).mean(dim=1)
        if relevance is None:
            relevance = torch.eye(weighted.shape[-1], dtype=weighted.dtype, device=weighted.device).expand_as(weighted)
        relevance = relevance + weighted @ relevance
    return relevance


class GradientWeightedRollout(AttentionMethod):
    """Chefer et al. 2021b for timm ViTs, upsampled bilinearly from the token grid to the slice size."""

    name = "chefer"
    class_specific = True

    def coarse_maps(self, slices: torch.Tensor | np.ndarray, targets) -> np.ndarray:
        """Maps on the token grid (B, gh, gw)."""
        model = self.model
        n_prefix, grid = token_layout(model)
        pool = pooling(model)
        include_prefix = bool(getattr(model.trunk, "pool_include_prefix", False))
        modules = attention_modules(model)
        targets = as_targets(targets, len(slices))
        device = self.device
        captured: list[torch.Tensor] = []

        def keep(_module, _inputs, output):
            captured.append(output)

        # the attention probabilities pass through attn_drop (identity in eval mode) on the explicit path
        handles = [module.attn_drop.register_forward_hook(keep) for module in modules.values()]
        flags = [(p, p.requires_grad) for p in model.parameters()]
        was_training = model.training
        out: list[np.ndarray] = []
        try:
            model.eval()
            for parameter, _ in flags:
                parameter.requires_grad_(False)
            with unfused_attention(modules), torch.enable_grad():
                for start in range(0, len(slices), self.batch_size):
                    chunk = torch.as_tensor(slices[start:start + self.batch_size]).to(device, torch.float32)
                    chunk = chunk.clone().requires_grad_(True)  # so the graph reaches every attention
                    chunk_targets = targets[start:start + self.batch_size].to(device)
                    captured.clear()
                    logits = model(chunk)
                    if len(captured) != len(modules):
                        raise ConfigError(f"expected one attention map per block ({len(modules)}), got {len(captured)}")
                    score = logits.gather(1, chunk_targets[:, None]).sum()  # samples do not interact in eval mode
                    gradients = torch.autograd.grad(score, captured)
                    relevance = relevance_from_attentions([a.detach() for a in captured], list(gradients))
                    out.append(pooled_relevance(relevance, n_prefix, grid, pool, include_prefix).cpu().numpy())
                    captured.clear()
        finally:
            for handle in handles:
                handle.remove()
            for parameter, flag in flags:
                parameter.requires_grad_(flag)
            model.train(was_training)
        return np.concatenate(out, axis=0).astype(np.float32) if out else np.zeros((0, *grid), np.float32)

    def slice_maps(self, slices, targets) -> np.ndarray:
        from headmri.explain.gradcam import upsample

        return upsample(self.coarse_maps(slices, targets), slices.shape[-2:])
