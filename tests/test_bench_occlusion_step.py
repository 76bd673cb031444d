"""bench/bench_occlusion_step.py's scoring: how far a slice step moved each subject's region values."""

from __future__ import annotations

import pandas as pd
import pytest

from bench_loader import bench_script


@pytest.fixture(scope="module")
def bench():
    with bench_script("bench_occlusion_step") as module:
        yield module


def _table(values: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"participant_id": pid, "target": "migraine", "label": label, "value": value}
                         for pid, row in values.items() for label, value in zip((17, 1022, 2022), row)])


def test_subject_agreement_scores_each_subject_by_rank_order_and_largest_relative_error(bench):
    exact = _table({"sub-a": [0.10, 0.05, 0.01], "sub-b": [0.02, 0.04, 0.08]})
    stepped = _table({"sub-a": [0.11, 0.04, 0.01], "sub-b": [0.08, 0.04, 0.02]})  # sub-b's order reversed
    scores = bench.subject_agreement(exact, stepped).set_index("participant_id")
    assert scores.loc["sub-a", "spearman"] == pytest.approx(1.0)
    assert scores.loc["sub-b", "spearman"] == pytest.approx(-1.0)
    assert scores.loc["sub-a", "rel_error"] == pytest.approx(0.01 / 0.10)
    assert scores.loc["sub-b", "rel_error"] == pytest.approx(0.06 / 0.08)


def test_tables_of_other_subjects_or_regions_are_refused(bench):
    exact = _table({"sub-a": [0.10, 0.05, 0.01]})
    with pytest.raises(ValueError, match="different subjects or regions"):
        bench.subject_agreement(exact, _table({"sub-b": [0.10, 0.05, 0.01]}))


def test_top_ranks_gives_the_other_rankings_rank_of_each_top_region(bench):
    first = pd.DataFrame({"label": [5, 7, 9, 11], "rank": [1, 2, 3, 4]})
    second = pd.DataFrame({"label": [7, 5, 11], "rank": [1, 2, 3]})
    assert bench.top_ranks(first, second, k=4) == [2, 1, -1, 3]  # label 9 is not in the second ranking
