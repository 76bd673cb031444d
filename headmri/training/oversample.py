"""Subject-level oversampling: repeat minority-class subjects so every class has as many subjects per epoch.

Oversampling subjects (not slices) keeps each subject's slices together, as the split does, and keeps
every subject's own slices in proportion; the paper oversampled its imbalanced training sets likewise.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def oversample_subjects(labels: Sequence[int], *, seed: int, epoch: int = 0) -> np.ndarray:
    """Indices into ``labels`` for one epoch: each class filled up to the largest class's size.

    A class of n subjects that must reach m gets every subject floor(m / n) times and m mod n of them
    once more, drawn without replacement from a generator seeded by (seed, epoch): deterministic, and
    a different remainder each epoch. Order: by class, then subject (the loader shuffles).
    """
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size == 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng([int(seed), int(epoch)])
    classes, counts = np.unique(labels, return_counts=True)
    target = int(counts.max())
    picked = []
    for cls in classes:
        members = np.flatnonzero(labels == cls)
        repeats, extra = divmod(target, members.size)
        picked.append(np.tile(members, repeats))
        if extra:
            picked.append(np.sort(rng.choice(members, extra, replace=False)))
    return np.concatenate(picked)
