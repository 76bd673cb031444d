"""The synthetic demo cohort: real anatomy (the MNI152NLin6Asym head) with planted group effects.

Subject labels are per group: the group's name in lower case and the subject's number within the group,
three digits (``hc001``, ``hc002``, ``migraine001``, ...). A subject's label never depends on the other
groups' sizes, so a larger group adds labels and keeps every existing one (with its image).
"""

from __future__ import annotations

from typing import Mapping

from headmri.errors import ConfigError


def subject_label(group: str, number: int) -> str:
    """The BIDS label of the ``number``-th (1-based) subject of ``group``, e.g. ('HC', 3) -> 'hc003'."""
    if not str(group).isalnum() or not str(group).isascii():
        raise ConfigError(f"demo group names are letters and digits only (they start subject labels), got {group!r}")
    if int(number) < 1:
        raise ConfigError(f"demo subject numbers start at 1, got {number}")
    return f"{str(group).lower()}{int(number):03d}"


def subject_number(label: str, group: str) -> int:
    """The number within its group of a demo subject label (inverse of subject_label)."""
    prefix = str(group).lower()
    digits = label[len(prefix):]
    if not label.startswith(prefix) or not digits.isdigit() or subject_label(group, int(digits)) != label:
        raise ConfigError(f"{label!r} is not a demo subject label of group {group!r} (expected e.g. {prefix}001)")
    return int(digits)


def demo_participants(group_sizes: Mapping[str, int]) -> list[tuple[str, str]]:
    """(label, group) of every demo subject, known from the config alone so the workflow can plan jobs
    before the cohort exists: ``hc001``.. ``hc<N>`` for group HC, then the next group, in group order."""
    out = [
        (subject_label(group, number), group)
        for group, size in group_sizes.items()
        for number in range(1, int(size) + 1)
    ]
    labels = [label for label, _ in out]
    if len(set(labels)) != len(labels):
        clash = sorted({label for label in labels if labels.count(label) > 1})
        raise ConfigError(
            f"demo groups {list(group_sizes)} give the same subject label(s) {clash[:5]}: group names must "
            "differ in more than letter case and trailing digits"
        )
    return out
