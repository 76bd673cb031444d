"""Did a fold's model learn anything? A check on its training history and its subject probabilities.

A model that never left chance level looks like any other fold in a metrics table: with one or two
validation subjects per class its AUC can be 1.0 from probabilities that differ by 1e-5, and its
explanation maps still have values that a ranking averages. Two symptoms give it away, and both must
be absent for a fold to count as learned:

1. **Training loss at chance.** Training classes are balanced by oversampling, so a model that outputs
   the same probabilities for every input has a training cross-entropy of ln(C) for C classes (ln 2 =
   0.693 for a binary task). The loss of the selected epoch (the model that is evaluated and explained)
   must be below ``max_loss_fraction_of_chance`` x ln(C).
2. **Constant subject probabilities.** Over every subject of the fold (training, validation and test),
   the spread (maximum - minimum) of the probability of a disease class, the largest over the disease
   classes, must be at least ``min_probability_spread``. An untrained model's subject probabilities
   differ by 1e-5 to 1e-3 (docs/training.md); a model that separates anything moves them by tenths. The
   training subjects count because the held-out ones may be two (one test subject per class, no
   validation subjects), and a learned model's near tie between those two is not a constant output.

Pure functions on plain values and tables; the training job records the result in the fold's
``metrics.tsv`` (``LEARNED_COLUMNS``), the merged tables and the rankings read it back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from headmri.config import LearnedCheckConfig
from headmri.errors import InputError

# The columns the training job appends to every row of a fold's metrics.tsv.
LEARNED_COLUMNS = ["learned", "learned_reason", "selected_epoch", "selected_train_loss", "chance_loss", "prob_spread"]


@dataclass(frozen=True)
class LearnedResult:
    """The verdict on one fold, with the numbers behind it."""

    learned: bool
    reason: str
    selected_epoch: int
    selected_train_loss: float
    chance_loss: float
    prob_spread: float

    def columns(self) -> dict:
        """The values of ``LEARNED_COLUMNS``."""
        return {"learned": self.learned, "learned_reason": self.reason, "selected_epoch": self.selected_epoch,
                "selected_train_loss": self.selected_train_loss, "chance_loss": self.chance_loss,
                "prob_spread": self.prob_spread}


def chance_loss(n_classes: int) -> float:
    """Cross-entropy of a constant prediction on balanced classes: ln(C)."""
    if n_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got {n_classes}")
    return math.log(n_classes)


def probability_spread(subjects: pd.DataFrame, classes: Sequence[str]) -> float:
    """Max - min over subjects of each disease class's probability (``prob_<class>`` for every class
    but the reference ``classes[0]``), the largest over those classes; NaN with fewer than 2 subjects."""
    columns = [f"prob_{c}" for c in list(classes)[1:]]
    missing = [c for c in columns if c not in subjects.columns]
    if missing:
        raise ValueError(f"subject predictions lack the column(s) {missing}")
    if len(subjects) < 2:
        return float("nan")
    values = subjects[columns].to_numpy(float)
    return float(np.nanmax(values.max(axis=0) - values.min(axis=0)))


def check_learned(
    train_losses: Sequence[float],
    selected_epoch: int,
    subjects: pd.DataFrame,
    classes: Sequence[str],
    check: LearnedCheckConfig = LearnedCheckConfig(),
) -> LearnedResult:
    """Decide whether the model kept at ``selected_epoch`` (1-based) learned.

    ``train_losses`` is the training loss of every epoch run (epoch 1 first); ``subjects`` the selected
    model's subject-level predictions of the fold's subjects (``prob_<class>`` columns; the training job
    passes training, validation and test subjects).
    """
    losses = np.asarray(list(train_losses), dtype=float)
    if not 1 <= selected_epoch <= losses.size:
        raise ValueError(f"selected epoch {selected_epoch} is not among the {losses.size} epochs of the history")
    chance = chance_loss(len(classes))
    selected = float(losses[selected_epoch - 1])
    spread = probability_spread(subjects, classes)
    limit = check.max_loss_fraction_of_chance * chance
    problems = []
    if not selected < limit:  # a NaN loss fails too
        lowest = float(np.nanmin(losses)) if np.isfinite(losses).any() else float("nan")
        if lowest < limit:
            problems.append(
                f"the training loss of the selected epoch {selected_epoch} is {selected:.4f}, not below "
                f"{check.max_loss_fraction_of_chance:g} x chance ln({len(classes)}) = {limit:.4f} "
                f"(the run reached {lowest:.4f} later: the checkpoint was chosen before the model learned)"
            )
        else:
            problems.append(
                f"the training loss never went below {check.max_loss_fraction_of_chance:g} x chance "
                f"ln({len(classes)}) = {limit:.4f} (selected epoch {selected_epoch}: {selected:.4f}, lowest {lowest:.4f})"
            )
    if math.isnan(spread):
        spread_note = "; fewer than 2 subjects, so the probability spread was not checked"
    elif spread < check.min_probability_spread:
        problems.append(
            f"the subject probabilities are nearly constant: they differ by {spread:.3g} over the "
            f"{len(subjects)} subjects of the fold, below {check.min_probability_spread:g}"
        )
        spread_note = ""
    else:
        spread_note = ""
    if problems:
        return LearnedResult(False, "; ".join(problems), int(selected_epoch), selected, chance, spread)
    reason = (f"training loss of the selected epoch {selected_epoch} is {selected:.4f} < {limit:.4f} "
              f"({check.max_loss_fraction_of_chance:g} x ln({len(classes)}))"
              + (f"; subject probabilities differ by up to {spread:.3g} over the {len(subjects)} subjects of the fold"
                 if not math.isnan(spread) else "") + spread_note)
    return LearnedResult(True, reason, int(selected_epoch), selected, chance, spread)


def as_bool(value) -> bool | None:
    """A ``learned`` cell as read from a TSV (bool, 'True'/'False', 1/0) -> bool; None when empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    if text in ("", "nan", "none"):
        return None
    raise ValueError(f"not a boolean: {value!r}")


def read_fold_learned(metrics_tsv: str | Path) -> bool | None:
    """The ``learned`` flag of one fold from its ``metrics.tsv``; None when the file has no such column
    (written before the check existed). Every row of the file must agree."""
    try:
        table = pd.read_csv(metrics_tsv, sep="\t")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise InputError(f"cannot read the fold's metrics: {error}", path=metrics_tsv) from error
    if "learned" not in table.columns:
        return None
    try:
        flags = {as_bool(v) for v in table["learned"]}
    except ValueError as error:
        raise InputError(f"the 'learned' column holds a value that is not a boolean ({error})", path=metrics_tsv) from error
    flags.discard(None)
    if len(flags) > 1:
        raise InputError("the rows of the fold's metrics disagree on 'learned'", path=metrics_tsv)
    return flags.pop() if flags else None
