"""The whole workflow on a small generated cohort, from BIDS to ranked regions: the planted effects
are what the models learn and what the explanation maps (the config's method) point at.

This is the issue's acceptance check on a cohort the default demo never used (another seed, one
task): at least 80 % of the planted structures in the top 10 regions, a mean test AUC of 0.9 or more,
every output of the main target written, and a second run with nothing to do.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from headmri.explain.merge import planted_recall

from workflow_runner import REPO, dry_run, run_snakemake, write_config

# The cohort is the demo's shape for one task (8 + 8, so 6 training subjects per class and fold, as in
# the demo) with another seed, 3 folds as the demo, the demo's recipe (multiple-instance training since
# 2026-12-04). Opt-in (HEADMRI_ACCEPTANCE=1) for the CI budget: all 5 tests passed in 17 min on the
# 2-core machine with a benchmark beside them (2026-12-04), about as long as the rest of the suite.
# (With 2 folds the ranking check once failed, recall 0.5: both folds had trained on the same subjects,
# which the splits no longer allow, see docs/splits.md.)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("HEADMRI_ACCEPTANCE") != "1",
                       reason="the whole workflow on a new 16-subject cohort (about 22 min); set HEADMRI_ACCEPTANCE=1"),
]

GROUP_SIZES = {"HC": 8, "migraine": 8}
SEED = 31


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    from headmri.demo.cohort import make_demo_cohort
    from headmri.demo.effects import read_effects

    workdir = tmp_path_factory.mktemp("end-to-end")
    make_demo_cohort(workdir / "bids", group_sizes=GROUP_SIZES, seed=SEED,
                     effects=read_effects(REPO / "resources" / "demo_effects.tsv"), threads=2)
    configfile = write_config(
        workdir / "config.yaml",
        bids_dir="bids",
        results_dir="results",
        groups=["HC", "migraine"],
        tasks=[{"name": "migraine", "classes": ["HC", "migraine"]}],
        # splits and recipe: the demo's (config.yaml), 3 folds of 2 test subjects per class, no validation.
        # Explanations for every patient of the task, as the structural paper averages over its patients; with the test
        # patients alone (2 per fold) the ranking would rest on few brains
        explain={"patients": "all"},
    )
    run_snakemake(workdir, configfile, "--cores", "2", timeout_s=2400)
    yield workdir
    shutil.rmtree(workdir, ignore_errors=True)


def test_planted_regions_lead_the_ranking(finished_run):
    ranking = finished_run / "results" / "tables" / "source-T1w_task-migraine_regions.tsv"
    truth = finished_run / "bids" / "ground_truth.tsv"
    recall = planted_recall(ranking, truth, top_k=10, group="migraine")
    top = pd.read_csv(ranking, sep="\t").sort_values("rank").head(10)
    assert recall >= 0.8, f"planted recall {recall:.2f}; top 10:\n{top.to_string()}"


def test_models_separate_the_groups_on_held_out_subjects(finished_run):
    metrics = pd.read_csv(finished_run / "results" / "tables" / "metrics.tsv", sep="\t")
    test = metrics[metrics["split"] == "test"]
    assert sorted(test["fold"]) == [0, 1, 2, 3]  # fold 0: the three folds' test subjects pooled
    folds = test[test["fold"] > 0]
    assert folds["auc"].mean() >= 0.9, test.to_string()
    pooled = test[test["fold"] == 0].iloc[0]
    assert pooled["n_subjects"] == folds["n_subjects"].sum() and pooled["n_folds"] == 3


def test_every_fold_of_a_new_seed_cohort_learned(finished_run):
    metrics = pd.read_csv(finished_run / "results" / "tables" / "metrics.tsv", sep="\t")
    test = metrics[(metrics["split"] == "test") & (metrics["fold"] > 0)]
    assert len(test) == 3 and test["learned"].astype(bool).all(), test[["fold", "learned", "learned_reason"]].to_string()


def test_every_output_is_written_and_a_rerun_does_nothing(finished_run):
    results = finished_run / "results"
    for path in ["tables/metrics_summary.md", "qc/preprocessing.tsv", "splits/task-migraine.tsv",
                 "README.md", "provenance"]:
        assert (results / path).exists(), path
    assert list((results / "figures").rglob("*.png")), "no figures written"
    assert dry_run(finished_run, finished_run / "config.yaml") == []


def test_the_report_bundles_tables_and_figures(finished_run):
    report = finished_run / "report.html"
    run_snakemake(finished_run, finished_run / "config.yaml", "--report", str(report), timeout_s=600)
    html = report.read_text(errors="replace")
    for expected in ("source-T1w_task-migraine_regions.tsv", "regions_ranked.png", "metrics_summary.md"):
        assert expected in html, f"{expected} is not in the report"
