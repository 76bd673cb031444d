"""Asymmetric multiple-instance training of a slice classifier (``training.objective: mil``).

The paper trains on every slice with its subject's label. For a control that label is right for every slice:
a healthy brain has no affected slice. For a patient it is right only for the slices through the affected
structures; the others carry the patient's label and nothing of the disease. A network trained on every slice
fits those as well, by whatever tells its few training patients apart, and on a new subject such slices score
at chance but confidently. On the demo cohorts where folds missed, the slices through the planted structures
ranked 71 of 72 held-out (patient, control) pairs right and the other slices 35 of 72, chance level, and the
mean over all slices, the subject's score, 63 (docs/benchmarks.md, "Where the misses come from").

So, as in multiple-instance learning with negative bags whose every instance is negative: each step takes
``controls_per_step`` control slices, each labelled control (cross-entropy per slice), and ``bags_per_step``
patients with ``bag_slices`` random slices each; a patient's bag scores the mean of its top half of slice
log-odds (``headmri.evaluation.aggregate.TOP_FRACTION``), and only that score is pulled towards the patient class. A patient's slices without an effect are
never asked to look diseased; a control's slices are all asked to look healthy, which is true. Two classes
only: the task's reference class (index 0) is the negative one. Held-out subjects are scored the same way
(aggregation ``top``: ``headmri.config.Config.aggregation_for``; the objective applies to two-class tasks,
``Config.task_training``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from headmri.evaluation.aggregate import top_count
from headmri.slices.loader import SliceBatchLoader


@dataclass(frozen=True)
class MilLoss:
    """The loss of a ``MilBatchLoader`` step, read from the step's fixed layout: ``controls`` control slices
    (cross-entropy per slice), then ``bags`` bags of ``bag_slices`` slices of one patient each (one
    cross-entropy per bag score). The layout, not the labels or subject indices, says which items form a bag,
    so a step never waits for the device (no ``unique``, no loop over the bags): the training step's no-sync
    promise (docs/training.md, "On a GPU") holds for this objective too."""

    controls: int
    bags: int
    bag_slices: int

    def __call__(self, logits: torch.Tensor, y: torch.Tensor, subject: torch.Tensor) -> torch.Tensor:
        expected = (self.controls + self.bags * self.bag_slices, 2)
        if tuple(logits.shape) != expected:
            raise ValueError(f"a multiple-instance step holds {self.controls} control slices and {self.bags} bags of "
                             f"{self.bag_slices} slices of two classes: logits {expected}, got {tuple(logits.shape)}")
        log_odds = logits[:, 1] - logits[:, 0]
        control = F.softplus(log_odds[: self.controls]).mean()  # -log P(control) per slice
        bags = log_odds[self.controls :].view(self.bags, self.bag_slices)
        scores = bags.topk(top_count(self.bag_slices), dim=1).values.mean(dim=1)  # as aggregation top scores a subject
        return (control + F.softplus(-scores).mean()) / 2  # -log P(patient) per bag; the two parts weigh alike


class MilBatchLoader(SliceBatchLoader):
    """Training batches of ``controls_per_step`` control slices, then ``bags_per_step`` bags of ``bag_slices``
    slices of one patient each. An epoch covers every control slice once (the last step filled up from the
    start of the permutation); patients take turns in a fresh order per epoch, and a bag's slices are drawn
    without replacement (with, for a patient with fewer slices). The order depends on (seed, epoch) only."""

    def __init__(self, npy_paths, labels, *, controls_per_step: int, bags_per_step: int, bag_slices: int,
                 seed: int, **options):
        super().__init__(npy_paths, labels, controls_per_step + bags_per_step * bag_slices, shuffle=True, seed=seed,
                         **options)
        if not (self.labels == 0).any() or not (self.labels != 0).any():
            raise ValueError("multiple-instance training needs control (class 0) and patient subjects")
        self.controls_per_step, self.bags_per_step, self.bag_slices = controls_per_step, bags_per_step, bag_slices

    @property
    def steps(self) -> int:
        capped = [min(n, self.max_slices_per_subject or n) for n in self.counts[self.labels == 0]]
        return -(-int(sum(capped)) // self.controls_per_step)

    def __len__(self) -> int:
        return self.steps

    def _epoch_items(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        c_subject, c_slice = super()._epoch_items(epoch)  # every (capped) slice, shuffled from (seed, epoch)
        keep = self.labels[c_subject] == 0
        c_subject, c_slice = c_subject[keep], c_slice[keep]
        rng = np.random.default_rng([self.seed, epoch, 1])
        fill = np.resize(np.arange(c_subject.size), self.steps * self.controls_per_step)
        patients = np.flatnonzero(self.labels != 0)
        turns = np.concatenate([rng.permutation(patients) for _ in range(-(-self.steps * self.bags_per_step // patients.size))])
        subjects, slices = [], []
        for step in range(self.steps):
            part = fill[step * self.controls_per_step:(step + 1) * self.controls_per_step]
            subjects.append(c_subject[part])
            slices.append(c_slice[part])
            for patient in turns[step * self.bags_per_step:(step + 1) * self.bags_per_step]:
                n = int(self.counts[patient])
                subjects.append(np.full(self.bag_slices, patient, dtype=np.int64))
                slices.append(rng.choice(n, self.bag_slices, replace=n < self.bag_slices).astype(np.int64))
        return np.concatenate(subjects), np.concatenate(slices)
