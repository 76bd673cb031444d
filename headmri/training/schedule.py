"""The learning-rate schedule: linear warm-up, then cosine decay to zero, stepped once per batch."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR


class WarmupCosine:
    """The factor applied to the base learning rate at optimizer step ``step`` (0-based).

    A plain callable object rather than a lambda so that ``LambdaLR.state_dict()`` saves it (resume).
    Written out because torch's ``LinearLR`` cannot start from zero and chaining it with
    ``CosineAnnealingLR`` through ``SequentialLR`` is longer than these few lines.
    """

    def __init__(self, warmup_steps: int, total_steps: int):
        if total_steps < 1 or warmup_steps < 0:
            raise ValueError(f"need total_steps >= 1 and warmup_steps >= 0, got {total_steps} and {warmup_steps}")
        self.warmup_steps = min(int(warmup_steps), int(total_steps))
        self.total_steps = int(total_steps)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(optimizer: torch.optim.Optimizer, *, warmup_steps: int, total_steps: int) -> LambdaLR:
    return LambdaLR(optimizer, WarmupCosine(warmup_steps, total_steps))
