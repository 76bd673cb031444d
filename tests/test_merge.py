"""Merging regional activations over patients, then folds, into a ranked table; planted-region recall."""

import math

import pandas as pd
import pytest

from headmri.errors import InputError
from headmri.explain.merge import RANKING_COLUMNS, merge_folds, planted_recall, rank_regions, write_ranking

# LUT codes: ctx-lh-postcentral, ctx-rh-postcentral, Left-Hippocampus
LH, RH, HIPPO = 1022, 2022, 17
NAMES = {LH: "ctx-lh-postcentral", RH: "ctx-rh-postcentral", HIPPO: "Left-Hippocampus"}


def _fold(values: dict[str, dict[int, float]], target="migraine") -> pd.DataFrame:
    rows = [
        {"participant_id": pid, "group": target, "split": "test", "target": target, "label": code, "region": NAMES[code], "value": v}
        for pid, by_code in values.items()
        for code, v in by_code.items()
    ]
    return pd.DataFrame(rows)


FOLD1 = {"sub-a": {LH: 4.0, RH: 2.0, HIPPO: 1.0}, "sub-b": {LH: 2.0, RH: 4.0, HIPPO: 3.0}}  # means 3, 3, 2
FOLD2 = {"sub-c": {LH: 5.0, RH: 1.0, HIPPO: 2.0}}  # means 5, 1, 2


def test_merge_averages_patients_within_folds_then_folds():
    ranked = merge_folds({1: _fold(FOLD1), 2: _fold(FOLD2)}, top_k=1)
    assert list(ranked.columns) == list(RANKING_COLUMNS)
    by_region = ranked.set_index("region")
    # fold means first: LH (3 + 5) / 2 = 4, not the patient-pooled (4 + 2 + 5) / 3
    assert by_region.loc["ctx-lh-postcentral", "mean"] == pytest.approx(4.0)
    assert by_region.loc["ctx-rh-postcentral", "mean"] == pytest.approx(2.0)
    assert by_region.loc["Left-Hippocampus", "mean"] == pytest.approx(2.0)
    assert by_region.loc["ctx-lh-postcentral", "sd"] == pytest.approx(math.sqrt(2.0))  # sd over folds, ddof 1
    assert by_region.loc["Left-Hippocampus", "sd"] == pytest.approx(0.0)
    # ranks: highest mean first; the tie at 2.0 is broken by LUT code (17 before 2022)
    assert list(ranked["region"]) == ["ctx-lh-postcentral", "Left-Hippocampus", "ctx-rh-postcentral"]
    assert list(ranked["rank"]) == [1, 2, 3]
    # top 1 per fold: fold 1 has LH and RH tied at 3 (both count), fold 2 has LH
    assert by_region.loc["ctx-lh-postcentral", "folds_in_top_k"] == 2
    assert by_region.loc["ctx-rh-postcentral", "folds_in_top_k"] == 1
    assert by_region.loc["Left-Hippocampus", "folds_in_top_k"] == 0
    assert set(ranked["n_folds"]) == {2} and set(ranked["n_patients"]) == {3}
    assert set(ranked["n_learned"]) == {2}  # no flags given: every fold counts as learned
    assert by_region.loc["Left-Hippocampus", "hemisphere"] == "L" and by_region.loc["Left-Hippocampus", "tissue"] == "subcortical"
    assert by_region.loc["ctx-rh-postcentral", "structure"] == "postcentral"
    assert by_region.loc["ctx-rh-postcentral", "tissue"] == "ctx"


# fold 3 is a chance fold: its maps have the largest values, all on the hippocampus
CHANCE_FOLD = {"sub-d": {LH: 0.0, RH: 0.0, HIPPO: 50.0}, "sub-e": {LH: 0.0, RH: 1.0, HIPPO: 40.0}}


def _write_fold_files(tmp_path, learned: dict[int, bool]):
    regions, metrics = {}, {}
    for fold, values in ((1, FOLD1), (2, FOLD2), (3, CHANCE_FOLD)):
        regions[fold] = tmp_path / f"fold-{fold}_regions.tsv"
        _fold(values).to_csv(regions[fold], sep="\t", index=False)
        metrics[fold] = tmp_path / f"fold-{fold}_metrics.tsv"
        pd.DataFrame({"split": ["test", "val"], "auc": [0.5, 1.0], "learned": learned[fold]}).to_csv(
            metrics[fold], sep="\t", index=False)
    return regions, metrics


def test_a_fold_that_did_not_learn_is_left_out_of_the_ranking_and_named(tmp_path, caplog):
    regions, metrics = _write_fold_files(tmp_path, {1: True, 2: True, 3: False})
    with caplog.at_level("WARNING", logger="headmri.explain.merge"):
        ranked = rank_regions(regions, top_k=1, metrics_paths=metrics)
    by_region = ranked.set_index("region")
    assert list(ranked["region"])[0] == "ctx-lh-postcentral"  # the chance fold's hippocampus does not lead
    assert by_region.loc["Left-Hippocampus", "mean"] == pytest.approx(2.0)  # folds 1 and 2 only
    assert set(ranked["n_folds"]) == {2} and set(ranked["n_learned"]) == {2} and set(ranked["n_patients"]) == {3}
    assert any("fold(s) [3] did not learn and are left out" in r.getMessage() for r in caplog.records)
    # configurable: kept in, the chance fold's values steer the ranking (what exclusion prevents)
    kept = rank_regions(regions, top_k=1, metrics_paths=metrics, exclude_unlearned=False)
    assert list(kept["region"])[0] == "Left-Hippocampus"
    assert set(kept["n_folds"]) == {3} and set(kept["n_learned"]) == {2}


def test_when_no_fold_learned_the_ranking_is_still_written_and_flagged(tmp_path, caplog):
    regions, metrics = _write_fold_files(tmp_path, {1: False, 2: False, 3: False})
    with caplog.at_level("ERROR", logger="headmri.explain.merge"):
        ranked = write_ranking(regions, 1, tmp_path / "ranking.tsv", metrics)
    written = pd.read_csv(tmp_path / "ranking.tsv", sep="\t")
    assert len(written) == 3 and set(written["n_learned"]) == {0} and set(written["n_folds"]) == {3}
    assert set(ranked["n_learned"]) == {0}
    assert any("no fold learned" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


def test_missing_values_of_one_patient_are_skipped_not_zeroed():
    fold = _fold({"sub-a": {LH: 4.0, RH: 2.0, HIPPO: float("nan")}, "sub-b": {LH: 2.0, RH: 4.0, HIPPO: 3.0}})
    ranked = merge_folds({1: fold}, top_k=2).set_index("region")
    assert ranked.loc["Left-Hippocampus", "mean"] == pytest.approx(3.0)
    assert math.isnan(ranked.loc["Left-Hippocampus", "sd"])  # one fold: no sd


def test_multi_class_tasks_rank_each_target_separately():
    fold = pd.concat([_fold(FOLD1, "migraine"), _fold({"sub-z": {LH: 0.0, RH: 1.0, HIPPO: 9.0}}, "APTH")])
    ranked = merge_folds({1: fold}, top_k=1)
    apth = ranked[ranked["target"] == "APTH"]
    assert list(apth["region"]) == ["Left-Hippocampus", "ctx-rh-postcentral", "ctx-lh-postcentral"]
    assert list(apth["rank"]) == [1, 2, 3]
    assert ranked[ranked["target"] == "migraine"]["rank"].tolist() == [1, 2, 3]


def test_a_fold_that_lacks_a_region_is_an_error(tmp_path):
    paths = {}
    for fold, values in ((1, FOLD1), (2, {"sub-c": {LH: 5.0, RH: 1.0}})):
        paths[fold] = tmp_path / f"fold-{fold}.tsv"
        _fold(values).to_csv(paths[fold], sep="\t", index=False)
    with pytest.raises(InputError, match="fold 2 .*lacks \\['Left-Hippocampus'\\]") as info:
        rank_regions(paths, top_k=2)
    assert str(paths[2]) in str(info.value)


def test_a_table_without_the_expected_columns_is_an_error(tmp_path):
    path = tmp_path / "regions.tsv"
    pd.DataFrame({"participant_id": ["sub-a"], "value": [1.0]}).to_csv(path, sep="\t", index=False)
    with pytest.raises(InputError, match="lacks columns"):
        rank_regions({1: path}, top_k=3)


def _ranking(tmp_path, names):
    path = tmp_path / "ranking.tsv"
    pd.DataFrame({"rank": range(1, len(names) + 1), "region": names}).to_csv(path, sep="\t", index=False)
    return path


def test_planted_recall_counts_either_hemisphere_and_tissue(tmp_path):
    ranking = _ranking(tmp_path, ["ctx-lh-postcentral", "wm-rh-supramarginal", "Right-Hippocampus", "ctx-lh-precuneus", "ctx-lh-lingual"])
    truth = tmp_path / "truth.tsv"
    pd.DataFrame(
        {"group": ["migraine", "migraine", "migraine", "migraine", "APTH"],
         "region": ["postcentral", "ctx-lh-supramarginal", "Left-Hippocampus", "lingual", "cuneus"]}
    ).to_csv(truth, sep="\t", index=False)
    # top 3 hold postcentral (ctx-lh), supramarginal (as wm-rh) and the hippocampus (right for left)
    assert planted_recall(ranking, truth, 3, group="migraine") == pytest.approx(3 / 4)
    assert planted_recall(ranking, truth, 5, group="migraine") == pytest.approx(1.0)
    assert planted_recall(ranking, truth, 1, group="migraine") == pytest.approx(1 / 4)
    assert planted_recall(ranking, truth, 5, group="APTH") == 0.0
    assert planted_recall(ranking, truth, 5) == pytest.approx(4 / 5)  # every group's regions


def test_planted_recall_rejects_unknown_region_names(tmp_path):
    truth = tmp_path / "truth.tsv"
    pd.DataFrame({"region": ["postcentrall"]}).to_csv(truth, sep="\t", index=False)
    with pytest.raises(InputError, match="postcentrall"):
        planted_recall(_ranking(tmp_path, ["ctx-lh-postcentral"]), truth, 1)
