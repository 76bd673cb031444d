"""The fMRI branch's wiring (issue 15): its config section, the BOLD input checks the workflow's check_bold
job runs, the planning of fMRIPrep-style runs, a task that pools groups, and the jobs that write the AAL
atlas, the baselines' rows and Table 1. The workflow itself runs in tests/test_fmri_workflow.py (slow)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from headmri import config as cfg_module
from headmri import paths
from headmri.errors import ConfigError, InputError
from headmri.evaluation.learned import LEARNED_COLUMNS
from headmri.evaluation.metrics import fold_metrics
from headmri.fmri import baselines as bl
from headmri.fmri import indicators, jobs
from headmri.fmri import inputs as fmri_inputs
from headmri.fmri.atlas import aal116
from headmri.fmri.bold import BoldFiles, mni_grid
from headmri.inputs import check_bold
from headmri.splits import make_split_file

from workflow_runner import REPO

FMRI_DEMO = REPO / "config" / "fmri_demo.yaml"


def _load(path=REPO / "config.yaml", **overrides):
    return cfg_module.load(path, overrides)


def _fmri_demo(**overrides):
    import yaml

    raw = yaml.safe_load((REPO / "config.yaml").read_text())
    raw.update(yaml.safe_load(FMRI_DEMO.read_text()))
    raw.update(overrides)
    return cfg_module.load(REPO / "config.yaml", raw)


# --- configuration ------------------------------------------------------------------------------------

def test_the_fmri_branch_is_off_by_default_and_adds_no_source():
    config = _load()
    assert not config.fmri.enabled and [s.name for s in config.sources] == ["T1w"] and config.structural


def test_the_fmri_demo_config_makes_each_chosen_indicator_an_axial_source_on_aal():
    config = _fmri_demo()
    assert [s.name for s in config.sources] == ["malff", "reho", "rfcs"] and not config.structural
    reho = config.source("reho")
    assert (reho.image, reho.mask, reho.atlas, reho.labels, reho.axis) == ("fmri_reho", "fmri_mask", "fmri_atlas",
                                                                          "fmri_atlas_tsv", 2)
    for source in config.sources:  # every key a source names is a file of the path table
        assert {source.image, source.mask, source.atlas, source.labels} <= set(paths.path_table())
    settings = indicators.IndicatorSettings(**config.fmri.settings())
    assert (settings.drop_volumes, settings.confounds, settings.smooth_fwhm, settings.reho_neighbourhood) == \
        (10, ("csf", "white_matter"), 4.0, 27)


def test_indicator_sources_are_sliced_with_a_fixed_window_that_the_config_can_change():
    sources = {s.name: s for s in _fmri_demo().sources}
    assert (sources["malff"].window, sources["reho"].window, sources["rfcs"].window) == ((0.0, 3.0), (0.0, 3.0), (0.0, 1.0))
    assert _load().source("T1w").window is None  # T1w: each subject's percentiles
    changed = _fmri_demo(fmri={"enabled": True, "sources": ["alff", "malff"], "windows": {"malff": [0.5, 2.5]}})
    assert [s.window for s in changed.sources] == [None, (0.5, 2.5)]
    with pytest.raises(ConfigError, match="window"):
        _fmri_demo(fmri={"enabled": True, "windows": {"malff": [2, 1]}})


def test_the_fixed_windows_are_the_schemas_defaults():
    import yaml

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    windows = schema["properties"]["fmri"]["properties"]["windows"]["properties"]
    assert {k: None if v["default"] is None else tuple(v["default"]) for k, v in windows.items()} == cfg_module.FMRI_WINDOWS


def test_the_maps_and_the_aal_atlas_are_named_with_the_declared_space():
    table = paths.path_table("r", fmri_space="MNI152NLin2009cAsym")
    named = [key for key in table if key.startswith("fmri_") and "space-" in table[key]]
    assert len(named) == len(paths.FMRI_MAPS) + 3  # the maps, the mask, the atlas and its table
    assert all("space-MNI152NLin2009cAsym" in table[key] for key in named)
    assert "space-MNI152NLin2009cAsym" not in table["brain_mni"]  # the T1w branch keeps its template's space


def test_the_indicator_names_are_the_same_in_config_paths_and_library():
    assert cfg_module.FMRI_INDICATORS == paths.FMRI_MAPS == indicators.MAPS


def test_the_synthetic_bold_cohort_refuses_structural_sources():
    with pytest.raises(ConfigError, match="sources: \\[\\]"):
        _fmri_demo(sources=[{"name": "T1w"}])


def test_no_source_at_all_is_refused():
    with pytest.raises(ConfigError, match="no image source"):
        _load(sources=[])


@pytest.mark.parametrize("fmri, error", [
    ({"enabled": True, "sources": ["alff", "bold"]}, Exception),  # the schema's enum
    ({"enabled": True, "reho_neighbourhood": 9}, Exception),
    ({"enabled": True, "voxel_mm": 5}, ConfigError),
    ({"enabled": True, "bold": "func/*_bold.nii.gz"}, ConfigError),
])
def test_bad_fmri_settings_are_refused(fmri, error):
    with pytest.raises(error):
        _fmri_demo(fmri=fmri)


def test_the_3d_baseline_is_refused_beside_the_fmri_maps_before_any_job():
    with pytest.raises(ConfigError, match="baseline_resnet3d.*3 mm grid"):
        _fmri_demo(model={"encoder": "cnn_demo", "baseline_resnet3d": True})


def test_real_bold_needs_a_participants_table():
    with pytest.raises(ConfigError, match="participants"):
        _fmri_demo(fmri={"enabled": True, "derivatives_dir": "/data/fmriprep"})


def test_a_task_pools_groups_into_one_class_and_refuses_a_group_in_two_classes():
    task = _fmri_demo().task("migraine")
    assert task.class_of("MWA") == task.class_of("MWoA") == "migraine" and task.class_of("HC") == "HC"
    assert task.class_of("PPTH") is None and task.groups == ("HC", "MWoA", "MWA")
    bad = [{"name": "x", "classes": ["HC", "migraine", "MWA"], "pool": {"migraine": ["MWoA", "MWA"]}}]
    with pytest.raises(ConfigError, match="more than one class"):
        _fmri_demo(tasks=bad)
    with pytest.raises(ConfigError, match="not in groups"):
        _fmri_demo(tasks=[{"name": "x", "classes": ["HC", "migraine"], "pool": {"migraine": ["MWoA", "APTH"]}}])


def test_the_split_of_a_pooled_task_names_the_class_and_holds_both_groups(tmp_path):
    ids = [f"sub-hc{i}" for i in range(3)] + ["sub-mwoa1", "sub-mwoa2", "sub-mwa1"]
    groups = ["HC"] * 3 + ["MWoA", "MWoA", "MWA"]
    pd.DataFrame({"participant_id": ids, "group": groups}).to_csv(tmp_path / "p.tsv", sep="\t", index=False)
    split = make_split_file(tmp_path / "p.tsv", tmp_path / "s.tsv", ["HC", "migraine"], folds=2, val_per_class=1,
                            test_per_class=1, pool={"migraine": ["MWoA", "MWA"]})
    members = split.drop_duplicates("participant_id").set_index("participant_id")
    assert set(members["group"]) == {"HC", "migraine"} and len(members) == 6
    assert (members.loc[["sub-mwoa1", "sub-mwa1"], "class_index"] == 1).all()


# --- input checks (what the check_bold job runs) --------------------------------------------------------

TR = 2.0


def _run(tmp_path, name="sub-01_task-rest_space-MNI152NLin6Asym_desc-preproc_bold.nii.gz", shape=(6, 7, 6, 80),
         mask_shape=None, tr=TR, sidecar=True):
    rng = np.random.default_rng(0)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    img = nib.Nifti1Image(1000 + rng.standard_normal(shape).astype(np.float32), affine)
    if len(shape) == 4:
        img.header.set_zooms((3.0, 3.0, 3.0, tr or 0.0))  # 0: no time step in the header
    bold = tmp_path / name
    nib.save(img, bold)
    mask = bold.with_name(name.replace("desc-preproc_bold", "desc-brain_mask"))
    nib.save(nib.Nifti1Image(np.ones(mask_shape or shape[:3], np.uint8), affine), mask)
    if sidecar and tr is not None:
        bold.with_name(name.replace(".nii.gz", ".json")).write_text(json.dumps({"RepetitionTime": tr}))
    return BoldFiles(subject="sub-01", bold=bold, mask=mask, space="MNI152NLin6Asym")


def test_a_good_run_passes_with_its_tr(tmp_path):
    row = check_bold(_run(tmp_path), "01", drop_volumes=10)
    assert (row["status"], row["modality"], row["subject"]) == ("ok", "bold", "sub-01") and "TR 2 s" in row["choice"]


def test_a_sessions_run_fills_the_session_and_run_columns_like_a_t1w_row(tmp_path):
    name = "sub-01_ses-2_task-rest_run-2_space-MNI152NLin6Asym_desc-preproc_bold.nii.gz"
    for shape, status in (((6, 7, 6, 80), "ok"), ((6, 7, 6), "failed")):
        row = check_bold(_run(tmp_path, name=name, shape=shape), "01_ses-2_task-rest_run-2", drop_volumes=10)
        assert (row["status"], row["subject"], row["session"], row["run"], row["image"]) == \
            (status, "sub-01", "ses-2", "run-2", "sub-01_ses-2_task-rest_run-2")
    assert (check_bold(_run(tmp_path), "01")["session"], check_bold(_run(tmp_path), "01")["run"]) == ("n/a", "n/a")


@pytest.mark.parametrize("case, problem, names", [
    (dict(shape=(6, 7, 6)), "4-D BOLD", "bold"),
    (dict(shape=(6, 7, 6, 40)), "too few|at least|volumes", "bold"),
    (dict(tr=None), "no repetition time", "bold"),
    (dict(mask_shape=(6, 7, 5)), "mask's grid", "mask"),
    (dict(name="sub-01_task-rest_space-T1w_desc-preproc_bold.nii.gz"), "not the declared MNI152NLin6Asym", "bold"),
])
def test_a_bad_run_is_refused_naming_subject_file_and_problem(tmp_path, case, problem, names):
    files = _run(tmp_path, **case)
    row = check_bold(files, "01", drop_volumes=10)
    assert row["status"] == "failed" and row["subject"] == "sub-01" and row["image"] == "sub-01", row
    assert pd.Series([row["problem"]]).str.contains(problem).item(), row["problem"]
    assert row["file"] == str(getattr(files, names))


def _confounds(files, rows, columns=("csf", "white_matter")):
    path = files.bold.with_name("sub-01_task-rest_desc-confounds_timeseries.tsv")
    pd.DataFrame({c: np.arange(rows, dtype=float) for c in columns}).to_csv(path, sep="\t", index=False)
    return BoldFiles(subject=files.subject, bold=files.bold, mask=files.mask, confounds=path, space=files.space)


@pytest.mark.parametrize("rows, columns, problem", [
    (79, ("csf", "white_matter"), "79 rows for 80 volumes"),
    (80, ("csf",), r"lacks the column\(s\) \['white_matter'\]"),
    (None, (), "confounds file does not exist"),
])
def test_a_confounds_table_that_does_not_fit_the_run_is_refused_by_the_input_check(tmp_path, rows, columns, problem):
    files = _run(tmp_path)
    files = _confounds(files, rows, columns) if rows else files
    row = check_bold(files, "01", drop_volumes=10, confounds=("csf", "white_matter"))
    assert row["status"] == "failed" and pd.Series([row["problem"]]).str.contains(problem).item(), row["problem"]
    assert row["subject"] == "sub-01" and row["file"] == str(files.confounds or files.bold)  # the table, or the run lacking one
    assert check_bold(_confounds(_run(tmp_path), 80), "01", drop_volumes=10, confounds=("csf", "white_matter"))["status"] == "ok"


def test_the_confounds_table_is_the_chosen_runs_among_several(tmp_path):
    func = tmp_path / "sub-01" / "func"
    func.mkdir(parents=True)
    for run in (1, 2):
        (func / f"sub-01_task-rest_run-{run}_desc-confounds_timeseries.tsv").touch()
    (func / "sub-01_task-rest_run-2_space-MNI152NLin6Asym_desc-preproc_bold.nii.gz").touch()
    defaults = cfg_module.FmriConfig()
    patterns = fmri_inputs.BoldPatterns(tmp_path, defaults.bold, defaults.mask, defaults.confounds_file, defaults.space)
    assert fmri_inputs.find_runs(patterns, "01")[0].confounds.endswith("run-2_desc-confounds_timeseries.tsv")
    (func / "sub-01_task-rest_run-2_desc-confounds_timeseries.tsv").unlink()
    (func / "sub-01_task-rest_run-3_desc-confounds_timeseries.tsv").touch()
    with pytest.raises(InputError, match="named like the chosen run"):
        fmri_inputs.find_runs(patterns, "01")


def test_runs_are_planned_in_the_declared_space_and_every_missing_one_is_listed(tmp_path):
    func = tmp_path / "sub-01" / "func"
    func.mkdir(parents=True)
    for space in ("MNI152NLin2009cAsym", "MNI152NLin6Asym"):
        (func / f"sub-01_task-rest_space-{space}_desc-preproc_bold.nii.gz").touch()
    (func / "sub-01_task-rest_desc-confounds_timeseries.tsv").touch()
    defaults = cfg_module.FmriConfig()
    patterns = fmri_inputs.BoldPatterns(tmp_path, defaults.bold, defaults.mask, defaults.confounds_file, defaults.space)
    [run] = fmri_inputs.find_runs(patterns, "01")
    assert "space-MNI152NLin6Asym_desc-preproc_bold" in run.bold and run.mask.endswith("MNI152NLin6Asym_desc-brain_mask.nii.gz")
    assert run.confounds.endswith("desc-confounds_timeseries.tsv") and run.sidecar.endswith("desc-preproc_bold.json")
    assert "in space MNI152NLin6Asym" in run.choice
    with pytest.raises(InputError) as error:
        fmri_inputs.plan_runs(patterns, ["01", "02", "03"])
    assert "sub-02" in str(error.value) and "sub-03" in str(error.value)


# --- the jobs ------------------------------------------------------------------------------------------

def test_the_atlas_job_writes_aal_on_the_grid_with_a_label_table(tmp_path):
    jobs.write_atlas(6, tmp_path / "aal.nii.gz", tmp_path / "aal.tsv")
    image, table = nib.load(tmp_path / "aal.nii.gz"), pd.read_csv(tmp_path / "aal.tsv", sep="\t")
    assert image.shape == mni_grid(6).shape and np.allclose(image.affine, mni_grid(6).affine)
    assert list(table["name"]) == list(aal116().names) and set(np.unique(image.dataobj)) - {0} <= set(table["label"])
    precuneus = table.set_index("name").loc["Precuneus_L"]
    assert (precuneus["hemisphere"], precuneus["tissue"], precuneus["region"]) == ("L", "cortex", "Precuneus")
    assert table.set_index("name").loc["Vermis_10", "hemisphere"] == "B"


@pytest.fixture
def rfcs_cohort(tmp_path):
    """RFCS vectors of 20 subjects (Precuneus_L raised in the patients) and a CNN-style split of them."""
    rng = np.random.default_rng(3)
    atlas, rows, files = aal116(), [], {}
    for group, n in (("HC", 10), ("MWoA", 5), ("MWA", 5)):
        for i in range(n):
            pid = f"sub-{group.lower()}{i}"
            values = 0.2 + 0.02 * rng.standard_normal(len(atlas.ids))
            values[atlas.names.index("Precuneus_L")] += 0.3 * (group != "HC")
            files[pid] = tmp_path / f"{pid}_rfcs.tsv"
            pd.DataFrame({"label": atlas.ids, "region": atlas.names, "rfcs": values}).to_csv(files[pid], sep="\t", index=False)
            rows.append({"participant_id": pid, "group": group})
    pd.DataFrame(rows).to_csv(tmp_path / "participants.tsv", sep="\t", index=False)
    make_split_file(tmp_path / "participants.tsv", tmp_path / "split.tsv", ["HC", "migraine"], folds=2,
                    val_per_class=1, test_per_class=4, pool={"migraine": ["MWoA", "MWA"]})
    jobs.write_atlas(6, tmp_path / "aal.nii.gz", tmp_path / "aal.tsv")
    return tmp_path, files


def test_the_baseline_job_writes_split_and_loso_rows_in_the_metrics_columns_and_ranked_aal_regions(rfcs_cohort):
    folder, files = rfcs_cohort
    outputs = jobs.BaselineOutputs(metrics=str(folder / "metrics.tsv"),
                                   importance={m: str(folder / f"{m}_importance.tsv") for m in bl.MODELS})
    settings = bl.BaselineSettings(trees=30, importance_repeats=3, fit_splits=("train", "val"))
    table = jobs.baseline_job(files, folder / "split.tsv", bl.Task("migraine", ("HC", "migraine"), "rfcs", "split"),
                              list(bl.MODELS), settings, outputs, folder / "aal.tsv")
    assert set(table["model"]) == {"svm", "randomforest", "svmloso", "randomforestloso"}
    assert set(table["split"]) == {"test"} and (table["source"] == "rfcs").all()
    loso = table[table["model"] == "svmloso"].iloc[0]
    assert (loso["fold"], loso["n_subjects"], loso["validation"]) == (0, 20, "loso")
    assert (table.loc[table["validation"] == "split", "n_subjects"] == 8).all()  # the split's test subjects
    # the columns of a CNN fold's metrics.tsv (the structural rows), in their order, then validation
    cnn = fold_metrics(pd.DataFrame({"split": ["test"] * 2, "class_index": [0, 1], "prob_HC": [0.6, 0.3],
                                     "prob_migraine": [0.4, 0.7]}), ["HC", "migraine"], task="t", model="m", fold=1)
    assert list(table.columns) == ["source", *cnn.columns, *LEARNED_COLUMNS, "validation"]
    ranked = pd.read_csv(outputs.importance["random_forest"], sep="\t")
    assert list(ranked["rank"]) == list(range(1, 117)) and set(ranked["name"]) == set(aal116().names)
    assert ranked.iloc[0]["name"] == "Precuneus_L"  # the planted region (the forest; the SVM is noisier here)


def test_table_1_holds_only_the_runs_participants(tmp_path):
    pd.DataFrame({"participant_id": ["sub-a", "sub-b", "sub-c", "sub-d"], "group": ["HC", "HC", "MWA", "MWA"],
                  "age": [30, 40, 50, 99]}).to_csv(tmp_path / "p.tsv", sep="\t", index=False)
    table = jobs.demographics_job(tmp_path / "p.tsv", tmp_path / "t1.tsv", ["HC", "MWoA", "MWA"], ["a", "b", "c"])
    assert list(table.columns)[:3] == ["variable", "HC (n=2)", "MWA (n=1)"]
    assert table.iloc[0]["MWA (n=1)"].startswith("50.00")
