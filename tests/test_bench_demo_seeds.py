"""bench/bench_demo_seeds.py's recipe candidates: ``--set KEY=VALUE`` changes exactly that config.yaml setting."""

from __future__ import annotations

import argparse

import pandas as pd
import pytest
import yaml

from bench_loader import bench_script


@pytest.fixture(scope="module")
def bench():
    with bench_script("bench_demo_seeds") as module:
        yield module


def test_an_override_changes_that_setting_only_and_is_recorded(bench, tmp_path):
    overrides = [bench.parse_override("training.epochs=8"), bench.parse_override("evaluation.aggregation=median")]
    written = yaml.safe_load(bench.write_cohort_config("one_hemisphere", tmp_path, overrides).read_text())
    default = yaml.safe_load(bench.write_cohort_config("one_hemisphere", tmp_path / "default").read_text())
    assert written["training"]["epochs"] == 8 and default["training"]["epochs"] != 8
    assert written["evaluation"]["aggregation"] == "median"
    written["training"]["epochs"] = default["training"]["epochs"]
    written["evaluation"]["aggregation"] = default["evaluation"]["aggregation"]
    written["results_dir"] = default["results_dir"]
    written["demo"]["effects_tsv"] = default["demo"]["effects_tsv"]
    assert written == default  # nothing else differs
    assert written["demo"]["seed"] == 303
    assert bench.recipe_label(overrides) == "training.epochs=8; evaluation.aggregation=median"
    assert bench.recipe_label([]) == "default"


def test_a_key_config_yaml_lacks_is_refused_not_ignored(bench, tmp_path):
    with pytest.raises(KeyError, match="training.epoch"):
        bench.write_cohort_config("demo", tmp_path, [bench.parse_override("training.epoch=8")])
    with pytest.raises(argparse.ArgumentTypeError, match="KEY=VALUE"):
        bench.parse_override("training.epochs")
    assert bench.parse_override("training.augment=affine") == (["training", "augment"], "affine")


def test_rows_with_a_newer_column_line_up_by_name_with_an_older_table(bench, tmp_path):
    table = tmp_path / "seeds.tsv"
    pd.DataFrame({"cohort": ["demo"], "task": ["apth"], "mean_test_auc": [1.0]}).to_csv(table, sep="\t", index=False)
    bench.append_rows(table, pd.DataFrame({"cohort": ["mixed_e"], "task": ["apth"], "recipe": ["default"],
                                           "mean_test_auc": [0.67]}))
    rows = pd.read_csv(table, sep="\t")
    assert rows["mean_test_auc"].tolist() == [1.0, 0.67]
    assert rows["recipe"].isna().tolist() == [True, False]


def test_pairs_right_counts_each_folds_missed_pairs_not_just_its_folds(bench):
    folds = pd.DataFrame({"auc": [1.0, 0.75, 0.0], "tp": [2, 1, 0], "fn": [0, 1, 1], "tn": [1, 2, 0], "fp": [1, 0, 1]})
    # 4 pairs (2 x 2), 4 pairs of which 3 right, 1 pair inverted
    assert bench.pairs_right(folds) == "7/9"
