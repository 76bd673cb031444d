"""Merging regional activations over patients, then folds, into a ranked table (per-subject normalisation,
the patient-versus-control contrast, bootstrap intervals); planted-region recall."""

import math

import numpy as np
import pandas as pd
import pytest

from headmri.errors import ConfigError, InputError
from headmri.explain.merge import (
    RANKING_COLUMNS,
    RankingOptions,
    _bootstrap_weights,
    _Group,
    hedges_g,
    merge_folds,
    normalise_subjects,
    planted_recall,
    rank_regions,
    write_ranking,
)

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


def test_a_patient_with_two_sessions_counts_once_in_the_means_and_the_patient_count():
    sessions = {"sub-a_ses-1": {LH: 4.0, RH: 0.0, HIPPO: 1.0}, "sub-a_ses-2": {LH: 6.0, RH: 0.0, HIPPO: 1.0},
                "sub-b": {LH: 1.0, RH: 3.0, HIPPO: 1.0}}
    ranked = merge_folds({1: _fold(sessions), 2: _fold(FOLD2)}, top_k=1).set_index("region")
    # fold 1: sub-a's sessions average to LH 5, then the patients (5 + 1) / 2 = 3 (not (4 + 6 + 1) / 3); fold 2: 5
    assert ranked.loc["ctx-lh-postcentral", "mean"] == pytest.approx(4.0)
    assert ranked.loc["ctx-rh-postcentral", "mean"] == pytest.approx((1.5 + 1.0) / 2)
    assert set(ranked["n_patients"]) == {3}  # sub-a, sub-b and sub-c


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


# --- region statistics: per-subject normalisation, the contrast, bootstrap intervals -------------------------

def _subjects(values: dict[str, dict[int, float]], group: str, target: str = "migraine") -> pd.DataFrame:
    """Rows of subjects of ``group`` explained for ``target`` (controls: group HC, target migraine)."""
    return pd.DataFrame([
        {"participant_id": pid, "group": group, "split": "test", "target": target, "label": code, "region": NAMES[code], "value": v}
        for pid, by_code in values.items() for code, v in by_code.items()
    ])


def _noisy(base: dict[int, float], n: int, prefix: str, seed: int, scale: float = 1.0, sd: float = 0.3):
    rng = np.random.default_rng(seed)
    return {f"sub-{prefix}{i}": {code: scale * (v + sd * rng.standard_normal()) for code, v in base.items()} for i in range(n)}


@pytest.mark.parametrize("normalisation", ["zscore", "rank"])
def test_per_subject_normalisation_stops_a_fold_with_100x_larger_scores_from_deciding_the_ranking(normalisation):
    # folds 1 and 2 put LH first; fold 3 (a learned model whose maps are 100x larger) puts the hippocampus first
    folds = {1: _fold(_noisy({LH: 3, RH: 2, HIPPO: 1}, 3, "a", 1, sd=0.1)),
             2: _fold(_noisy({LH: 3, RH: 2, HIPPO: 1}, 3, "b", 2, sd=0.1)),
             3: _fold(_noisy({LH: 1, RH: 2, HIPPO: 3}, 3, "c", 3, scale=100.0, sd=0.1))}
    raw = merge_folds(folds, top_k=1, options=RankingOptions(normalisation="none"))
    assert raw["region"].iloc[0] == "Left-Hippocampus"  # the raw mean follows the loudest fold
    normalised = merge_folds(folds, top_k=1, options=RankingOptions(normalisation=normalisation))
    assert list(normalised["region"]) == ["ctx-lh-postcentral", "ctx-rh-postcentral", "Left-Hippocampus"]
    assert set(normalised["normalisation"]) == {normalisation}
    # and the ranking no longer depends on fold 3's scale at all
    folds[3] = _fold(_noisy({LH: 1, RH: 2, HIPPO: 3}, 3, "c", 3, scale=1.0, sd=0.1))
    rescaled = merge_folds(folds, top_k=1, options=RankingOptions(normalisation=normalisation))
    np.testing.assert_allclose(rescaled["score"], normalised["score"], atol=1e-9)


def test_zscore_and_rank_normalise_each_subject_over_its_regions():
    values = np.array([[1.0, 2.0, 3.0, np.nan], [5.0, 5.0, 5.0, 5.0]])
    z = normalise_subjects(values, "zscore")
    np.testing.assert_allclose(z[0, :3], [-math.sqrt(1.5), 0.0, math.sqrt(1.5)])
    assert math.isnan(z[0, 3]) and (z[1] == 0).all()  # NaN stays NaN; a flat map has no region standing out
    np.testing.assert_allclose(normalise_subjects(values, "rank")[0, :3], [0.0, 0.5, 1.0])
    np.testing.assert_allclose(normalise_subjects(values, "rank")[1], [0.5] * 4)  # all tied
    with pytest.raises(ConfigError, match="normalisation"):
        normalise_subjects(values, "minmax")


def test_hedges_g_is_cohens_d_with_the_pooled_sd_and_the_small_sample_correction():
    patients = _Group(("a", "b", "c"), np.array([[1.0], [2.0], [3.0]]))
    controls = _Group(("d", "e"), np.array([[0.0], [1.0]]))
    pooled = math.sqrt((2 * 1.0 + 1 * 0.5) / 3)
    expected = (2.0 - 0.5) / pooled * (1 - 3 / (4 * 5 - 9))
    assert hedges_g(patients.moments(None), controls.moments(None))[0, 0] == pytest.approx(expected)
    # bootstrap counts: drawing a twice and c never is the sample (a, a, b)
    weights = np.array([[2.0, 1.0, 0.0]])
    again = _Group(("a", "a2", "b"), np.array([[1.0], [1.0], [2.0]]))
    assert hedges_g(patients.moments(weights), controls.moments(None))[0, 0] == pytest.approx(
        hedges_g(again.moments(None), controls.moments(None))[0, 0])


@pytest.mark.parametrize("normalisation", ["none", "zscore"])
def test_the_contrast_ranks_first_a_region_higher_in_patients_than_controls_over_a_region_high_in_both(normalisation):
    # the hippocampus is hot in everyone (raw 8 in patients and controls); LH is 5 in patients, 1 in controls
    patients = _noisy({LH: 5, RH: 2, HIPPO: 8}, 6, "p", 1)
    controls = _noisy({LH: 1, RH: 2, HIPPO: 8}, 6, "c", 2)
    fold = pd.concat([_subjects(patients, "migraine"), _subjects(controls, "HC")])
    by_mean = merge_folds({1: fold}, top_k=1, options=RankingOptions(normalisation=normalisation, reference_class="HC"))
    assert by_mean["region"].iloc[0] == "Left-Hippocampus"  # the mean ranks where every map looks
    assert set(by_mean["n_patients"]) == {6} and set(by_mean["n_controls"]) == {6}
    by_contrast = merge_folds({1: fold}, top_k=1, options=RankingOptions(normalisation=normalisation, ranking="contrast",
                                                                          reference_class="HC"))
    assert by_contrast["region"].iloc[0] == "ctx-lh-postcentral"
    assert by_contrast["score"].iloc[0] > 2  # a large effect
    assert set(by_contrast["statistic"]) == {"contrast"}
    # the mean is still over patients only, whichever statistic ranks
    assert by_contrast.set_index("region").loc["Left-Hippocampus", "mean"] == pytest.approx(
        by_mean.set_index("region").loc["Left-Hippocampus", "mean"])


def test_the_contrast_is_averaged_over_folds_within_which_it_is_computed():
    folds = {}
    for fold, scale in ((1, 1.0), (2, 100.0)):
        patients = _noisy({LH: 5, RH: 2, HIPPO: 8}, 4, f"p{fold}-", fold, scale=scale)
        controls = _noisy({LH: 1, RH: 2, HIPPO: 8}, 4, f"c{fold}-", fold + 10, scale=scale)
        folds[fold] = pd.concat([_subjects(patients, "migraine"), _subjects(controls, "HC")])
    options = RankingOptions(ranking="contrast", reference_class="HC")
    both = merge_folds(folds, top_k=1, options=options).set_index("region")
    one = {f: merge_folds({f: folds[f]}, top_k=1, options=options).set_index("region") for f in folds}
    for region in NAMES.values():
        assert both.loc[region, "score"] == pytest.approx((one[1].loc[region, "score"] + one[2].loc[region, "score"]) / 2)
        assert both.loc[region, "contrast"] == pytest.approx(both.loc[region, "score"])


def test_ranking_by_the_contrast_without_controls_is_an_error_naming_the_fold(tmp_path):
    path = tmp_path / "fold-1.tsv"
    _fold(FOLD1).to_csv(path, sep="\t", index=False)
    with pytest.raises(InputError, match="contrast.*fold 1 has no controls") as info:
        rank_regions({1: path}, top_k=1, options=RankingOptions(ranking="contrast"))
    assert str(path) in str(info.value)
    assert merge_folds({1: _fold(FOLD1)}, top_k=1)["contrast"].isna().all()  # no controls: no contrast column values


def _bootstrap_folds():
    return {fold: pd.concat([_subjects(_noisy({LH: 3, RH: 2.8, HIPPO: 1}, 5, f"p{fold}-", fold, sd=0.5), "migraine"),
                             _subjects(_noisy({LH: 1, RH: 2.6, HIPPO: 1}, 5, f"c{fold}-", fold + 5, sd=0.5), "HC")])
            for fold in (1, 2)}


@pytest.mark.parametrize("ranking", ["mean", "contrast"])
def test_bootstrap_intervals_are_reproducible_with_a_seed_and_change_with_another(ranking):
    folds = _bootstrap_folds()
    run = lambda seed: merge_folds(folds, top_k=1, options=RankingOptions(  # noqa: E731
        normalisation="zscore", ranking=ranking, bootstrap=200, seed=seed, reference_class="HC"))
    first, again, other = run(7), run(7), run(8)
    pd.testing.assert_frame_equal(first, again)
    assert not np.allclose(first["ci_low"], other["ci_low"])
    assert (first["ci_low"] <= first["score"]).all() and (first["score"] <= first["ci_high"]).all()
    assert (first["ci_low"] < first["ci_high"]).all()
    bounds = first["rank_ci"].str.split("-", expand=True).astype(int)
    assert (bounds[0] <= first["rank"]).all() and (first["rank"] <= bounds[1]).all()
    assert (bounds[0] >= 1).all() and (bounds[1] <= 3).all()
    # without replicates the interval columns are empty
    plain = merge_folds(folds, top_k=1, options=RankingOptions(normalisation="zscore", ranking=ranking, reference_class="HC"))
    assert plain["ci_low"].isna().all() and (plain["rank_ci"] == "").all()
    np.testing.assert_allclose(plain["score"], first["score"])


def test_bootstrap_intervals_narrow_with_more_patients():
    def width(n):
        fold = _fold(_noisy({LH: 3, RH: 2, HIPPO: 1}, n, "p", 3, sd=1.0))
        ranked = merge_folds({1: fold}, top_k=1, options=RankingOptions(bootstrap=500, seed=1)).set_index("region")
        return ranked.loc["ctx-lh-postcentral", "ci_high"] - ranked.loc["ctx-lh-postcentral", "ci_low"]
    assert width(40) < width(5) / 2


def test_bootstrap_draws_subjects_within_folds_or_once_for_every_fold_they_are_in():
    rng = np.random.default_rng(0)
    # explain.patients: test -- every subject in one fold: each fold keeps its own number of draws
    test = {1: _Group(("a", "b"), np.zeros((2, 1))), 2: _Group(("c", "d", "e"), np.zeros((3, 1)))}
    weights = _bootstrap_weights(test, 50, rng)
    assert (weights[1].sum(axis=1) == 2).all() and (weights[2].sum(axis=1) == 3).all()
    # explain.patients: all -- the same subjects in every fold: one draw, shared by the folds
    every = {1: _Group(("a", "b", "c"), np.zeros((3, 1))), 2: _Group(("a", "b", "c"), np.zeros((3, 1)))}
    weights = _bootstrap_weights(every, 50, rng)
    np.testing.assert_array_equal(weights[1], weights[2])
    assert (weights[1].sum(axis=1) == 3).all() and weights[1].std() > 0


def test_unknown_statistic_or_normalisation_is_a_config_error():
    with pytest.raises(ConfigError, match="explain.ranking"):
        RankingOptions(ranking="median")
    with pytest.raises(ConfigError, match="explain.normalisation"):
        RankingOptions(normalisation="fold")


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


def test_the_contrast_needs_the_controls_explained_and_asks_for_them():
    from headmri import config

    def explain(**keys):
        return config.from_mapping({"tasks": [{"name": "t", "classes": ["HC", "migraine"]}], "explain": keys}).explain

    assert not explain().explains_controls and explain().normalisation == "zscore" and explain().bootstrap == 1000
    assert explain(ranking="contrast").explains_controls  # implied
    assert explain(controls=True).explains_controls  # explicit, ranked by the mean
    with pytest.raises(ConfigError, match="needs explain.controls"):
        explain(ranking="contrast", controls=False)
    assert RankingOptions(**explain(ranking="contrast").ranking_options("HC")).reference_class == "HC"
