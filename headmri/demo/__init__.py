"""The synthetic demo cohort: real anatomy (the MNI152NLin6Asym head) with planted group effects."""

from __future__ import annotations

from typing import Mapping


def demo_participants(group_sizes: Mapping[str, int]) -> list[tuple[str, str]]:
    """(label, group) of every demo subject, known from the config alone so the workflow can plan jobs
    before the cohort exists. Labels are demo001, demo002, ... in group order."""
    out = []
    index = 1
    for group, size in group_sizes.items():
        for _ in range(int(size)):
            out.append((f"demo{index:03d}", group))
            index += 1
    return out
