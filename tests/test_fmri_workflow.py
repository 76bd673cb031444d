"""The fMRI branch through the whole workflow (issue 15): fMRIPrep-style derivatives of a tiny synthetic
BOLD cohort (6 mm grid, 100 volumes) -> input checks -> indicators -> the ReHo source's slices, splits,
training, explanations, rankings -> metrics.tsv with the CNN's and the ViT's rows (each on slices of its own size,
in the fixed window) beside the SVM, random forest and
leave-one-subject-out rows, AAL-named region tables, Table 1. The synthetic cohort's own rules are planned
by a dry run of config/fmri_demo.yaml."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from headmri.demo import bold as demo
from headmri.fmri.atlas import aal116
from headmri.fmri.bold import mni_grid

from workflow_runner import REPO, dry_run, run_snakemake, write_config

pytestmark = pytest.mark.slow  # the workflow on 6 subjects: 1.7 min of CPU; 6 min wall on the loaded 2-core VM (2026-11-30)

SIZES = {"HC": 3, "MWoA": 2, "MWA": 1}  # 3 controls, 3 migraine: the least a 2-fold split takes


def _fmri_config(**overrides) -> dict:
    config = yaml.safe_load((REPO / "config" / "fmri_demo.yaml").read_text())
    config["tasks"] = config["tasks"][:1]  # HC vs migraine, MWoA and MWA pooled
    config["fmri"].update({"voxel_mm": 6, "sources": ["reho"], "importance_repeats": 2})
    config["splits"] = {"folds": 2, "val_per_class": 1, "test_per_class": 1}
    config["training"] = {"epochs": 1, "batch_size": 16, "warmup_epochs": 0, "patience": 1}
    config["explain"].update({"bootstrap": 20, "sanity_check": False})
    config.update(overrides)
    return config


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("fmri_wd")
    settings = demo.BoldDemoSettings(seed=3, volumes=100, grid=mni_grid(6))
    demo.make_bold_cohort(wd / "data", SIZES, settings=settings)
    config = _fmri_config(participants_tsv="data/participants.tsv")
    config["fmri"]["derivatives_dir"] = "data/derivatives/fmriprep"
    configfile = write_config(wd / "config.yaml", **config)
    run_snakemake(wd, configfile, "--cores", "2", timeout_s=900)
    return wd / "results"


def test_every_bold_run_is_checked_and_recorded(finished_run):
    inputs = pd.read_csv(finished_run / "qc" / "inputs.tsv", sep="\t", keep_default_na=False)
    assert len(inputs) == 6 and set(inputs["modality"]) == {"bold"} and set(inputs["status"]) == {"ok"}
    assert inputs["file"].str.contains("derivatives/fmriprep/sub-.*_desc-preproc_bold.nii.gz").all()


def test_metrics_hold_the_cnn_the_baselines_and_leave_one_subject_out(finished_run):
    metrics = pd.read_csv(finished_run / "tables" / "metrics.tsv", sep="\t")
    rows = metrics.groupby(["source", "model"])["fold"].apply(sorted).to_dict()
    # val and test rows of both folds, and the pooled test row (fold 0)
    assert rows[("reho", "cnndemo")] == rows[("reho", "vittinydemo")] == [0, 1, 1, 2, 2]
    assert rows[("rfcs", "svm")] == rows[("rfcs", "randomforest")] == [1, 2]
    assert rows[("rfcs", "svmloso")] == rows[("rfcs", "randomforestloso")] == [0]
    loso = metrics[metrics["model"] == "svmloso"].iloc[0]
    assert (loso["n_subjects"], loso["split"]) == (6, "test")
    assert set(metrics["task"]) == {"migraine"}
    summary = (finished_run / "tables" / "metrics_summary.md").read_text()
    assert "| rfcs | migraine | svmloso | n/a | 6 |" in summary  # in the pooled section, not a fold of its own


def test_the_maps_are_sliced_at_each_encoders_size_in_the_fixed_window(finished_run):
    import json

    for size in (64, 112):  # cnn_demo and vit_tiny_demo
        meta = json.loads((finished_run / "slices" / "source-reho" / f"sub-hc001_size-{size}_slices.json").read_text())
        assert meta["shape"][1:] == [size, size]
        assert meta["intensity"]["window"] == [0.0, 3.0] and meta["parameters"]["percentiles"] is None


def test_the_split_pools_both_migraine_groups_into_one_class(finished_run):
    split = pd.read_csv(finished_run / "splits" / "task-migraine.tsv", sep="\t")
    members = split.drop_duplicates("participant_id").set_index("participant_id")["group"]
    assert members.to_dict() == {"sub-hc001": "HC", "sub-hc002": "HC", "sub-hc003": "HC", "sub-mwa001": "migraine",
                                 "sub-mwoa001": "migraine", "sub-mwoa002": "migraine"}


def test_regions_are_named_from_aal(finished_run):
    names = set(aal116().names)
    ranking = pd.read_csv(finished_run / "tables" / "source-reho_task-migraine_regions.tsv", sep="\t")
    assert set(ranking["region"]) <= names and len(ranking) > 50
    for model in ("svm", "randomforest"):
        importance = pd.read_csv(finished_run / "tables" / f"source-rfcs_task-migraine_model-{model}_importance.tsv", sep="\t")
        assert set(importance["name"]) == names and list(importance["rank"]) == list(range(1, 117))


def test_the_indicator_maps_sit_on_the_grid_inside_the_mask(finished_run):
    import nibabel as nib

    func = finished_run / "fmri" / "sub-hc001" / "func"
    mask = np.asarray(nib.load(next(func.glob("*_desc-brain_mask.nii.gz"))).dataobj) > 0
    reho = nib.load(next(func.glob("*_desc-reho_boldmap.nii.gz")))
    assert reho.shape == mni_grid(6).shape and np.allclose(reho.affine, mni_grid(6).affine)
    values = np.asarray(reho.dataobj)
    assert np.isfinite(values).all() and (values[~mask] == 0).all()
    assert values[mask].mean() == pytest.approx(1.0, abs=1e-3)  # ReHo divided by its mean in the mask


def test_table_1_has_the_cohorts_groups(finished_run):
    table = pd.read_csv(finished_run / "tables" / "demographics.tsv", sep="\t")
    assert list(table.columns[1:4]) == ["HC (n=3)", "MWoA (n=2)", "MWA (n=1)"]
    assert set(table["test"].dropna()) == {"Kruskal-Wallis H", "chi-square"}


def test_the_demo_config_plans_one_synthetic_subject_per_job_and_no_structural_job(tmp_path):
    configfile = write_config(tmp_path / "config.yaml", **_fmri_config(tasks=yaml.safe_load(
        (REPO / "config" / "fmri_demo.yaml").read_text())["tasks"]))
    jobs = dry_run(tmp_path, configfile)
    by_rule = pd.Series([j.rule for j in jobs]).value_counts().to_dict()
    subjects = sum(yaml.safe_load(configfile.read_text())["fmri"]["demo"]["group_sizes"].values())
    assert by_rule["make_demo_bold_subject"] == by_rule["fmri_indicators"] == by_rule["check_bold"] == subjects
    assert by_rule["fmri_baselines"] == 2 and by_rule["make_split"] == 2  # HC vs migraine, and three classes
    assert not {"brain_extraction", "register_to_mni", "make_demo_subject", "check_input"} & set(by_rule)
