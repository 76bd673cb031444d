"""The fMRI branch with several sessions and runs per participant (fMRI-only runs): each session its own
image keyed like the T1w branch's (``01_ses-2``), ``fmri.runs`` among a session's runs, each image with its
own confounds table, every image of a participant in the participant's split set, and the baselines'
leave-one-subject-out leaving a participant out with all its images. The planning reads file names only,
so the derivatives here are empty files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from headmri import config as cfg_module
from headmri.errors import ConfigError, InputError
from headmri.fmri import baselines as bl
from headmri.fmri import inputs as fmri_inputs
from headmri.fmri import jobs
from headmri.fmri.validation import leave_one_subject_out_images
from headmri.inputs import IMAGE_KEY_PATTERN, unused_rows
from headmri.splits import make_split_file, read_split

from workflow_runner import REPO, dry_run, write_config

MNI6 = "MNI152NLin6Asym"


def _derivatives(root: Path, label: str, session: str | None = None, runs=(None,), space=MNI6,
                 confounds: bool = True) -> None:
    """Empty files named as fMRIPrep names one participant's runs of one session (in ses-X/ when given)."""
    func = root / f"sub-{label}" / (f"ses-{session}" if session else "") / "func"
    func.mkdir(parents=True, exist_ok=True)
    for run in runs:
        stem = f"sub-{label}" + (f"_ses-{session}" if session else "") + "_task-rest" + (f"_run-{run}" if run else "")
        (func / f"{stem}_space-{space}_desc-preproc_bold.nii.gz").touch()
        if confounds:
            (func / f"{stem}_desc-confounds_timeseries.tsv").touch()


def _patterns(root: Path) -> fmri_inputs.BoldPatterns:
    defaults = cfg_module.FmriConfig()  # the default globs: sessions' folders included
    return fmri_inputs.BoldPatterns(root, defaults.bold, defaults.mask, defaults.confounds_file, defaults.space)


def test_each_session_is_its_own_image_with_its_own_files(tmp_path):
    for session in ("1", "2"):
        _derivatives(tmp_path, "01", session)
    planned = fmri_inputs.plan_runs(_patterns(tmp_path), ["01"])
    assert sorted(planned) == ["01_ses-1", "01_ses-2"]
    for key, run in planned.items():
        session = key.split("-")[-1]
        assert run.label == "01" and run.key == key and run.session == session and run.choice == "only file"
        for path in (run.bold, run.mask, run.sidecar, run.confounds):
            assert f"/ses-{session}/func/sub-01_ses-{session}_task-rest_" in path
        assert run.files(MNI6).subject == f"sub-{key}"  # errors name the image


def test_a_session_without_a_confounds_table_does_not_take_another_sessions(tmp_path):
    _derivatives(tmp_path, "01", "1")
    _derivatives(tmp_path, "01", "2", confounds=False)
    planned = fmri_inputs.plan_runs(_patterns(tmp_path), ["01"])
    assert planned["01_ses-1"].confounds.endswith("ses-1_task-rest_desc-confounds_timeseries.tsv")
    assert planned["01_ses-2"].confounds is None  # check_bold then reports it missing, for this image only


def test_all_sessions_of_a_participant_are_in_the_participants_split_set(tmp_path):
    labels = {"hc1": "HC", "hc2": "HC", "hc3": "HC", "mw1": "MWA", "mw2": "MWA", "mw3": "MWA"}
    for label in labels:
        for session in ("1", "2") if label in ("hc1", "mw2") else (None,):
            _derivatives(tmp_path / "fmriprep", label, session)
    planned = fmri_inputs.plan_runs(_patterns(tmp_path / "fmriprep"), sorted(labels))
    participant_of = {key: run.label for key, run in planned.items()}  # the workflow's PARTICIPANT_OF
    assert {k for k, p in participant_of.items() if p == "hc1"} == {"hc1_ses-1", "hc1_ses-2"}
    pd.DataFrame({"participant_id": [f"sub-{s}" for s in labels], "group": list(labels.values())}).to_csv(
        tmp_path / "participants.tsv", sep="\t", index=False)
    split = make_split_file(tmp_path / "participants.tsv", tmp_path / "split.tsv", ["HC", "MWA"],
                            subjects=sorted(set(participant_of.values())), images=participant_of, folds=2,
                            val_per_class=1, test_per_class=1)
    assert set(split["label"]) == set(planned) and len(split) == 2 * len(planned)
    sets = split.groupby(["fold", "subject"])["split"].nunique()
    assert (sets == 1).all()  # check_leakage's rule, here with two participants of two images each
    assert set(split.loc[split["label"].str.startswith("mw2"), "subject"]) == {"sub-mw2"}


def test_runs_all_keeps_every_run_of_a_session_each_with_its_own_confounds_table(tmp_path):
    _derivatives(tmp_path, "01", "1", runs=("1", "2"))
    planned = fmri_inputs.plan_runs(_patterns(tmp_path), ["01"], runs="all")
    assert sorted(planned) == ["01_ses-1_task-rest_run-1", "01_ses-1_task-rest_run-2"]
    for key, run in planned.items():
        run_entity = key.rsplit("_", 1)[1]
        assert run.confounds.endswith(f"_{run_entity}_desc-confounds_timeseries.tsv")
        assert f"_{run_entity}_space-{MNI6}_desc-brain_mask" in run.mask and f"_{run_entity}_space-" in run.sidecar
        assert "all kept (runs: all)" in run.choice and pd.Series([key]).str.fullmatch(IMAGE_KEY_PATTERN).item()


def test_runs_last_takes_the_last_run_of_a_session_and_records_it(tmp_path):
    _derivatives(tmp_path, "01", "1", runs=("1", "2"))
    [run] = fmri_inputs.plan_runs(_patterns(tmp_path), ["01"], runs="last").values()
    assert run.key == "01_ses-1" and "_run-2_" in run.bold and run.confounds.endswith("run-2_desc-confounds_timeseries.tsv")
    assert run.choice == "last of 2 (runs: last)"
    [first] = fmri_inputs.plan_runs(_patterns(tmp_path), ["01"]).values()
    assert "_run-1_" in first.bold and "(runs: first)" in first.choice


def test_the_runs_left_out_get_not_used_rows_with_their_session_and_run(tmp_path):
    _derivatives(tmp_path, "01", "1", runs=("1", "2"))
    [run] = fmri_inputs.plan_runs(_patterns(tmp_path), ["01"], runs="last").values()
    assert len(run.others) == 1 and "_run-1_" in run.others[0]
    [row] = unused_rows([run], "bold")
    assert row["file"] == run.others[0] and row["status"] == "not used" and row["image"] == "n/a"
    assert (row["subject"], row["session"], row["run"], row["modality"]) == ("sub-01", "ses-1", "run-1", "bold")
    assert row["choice"] == "not chosen: last of 2 (runs: last)"
    every = fmri_inputs.plan_runs(_patterns(tmp_path), ["01"], runs="all").values()
    assert unused_rows(every, "bold") == []  # runs: all leaves nothing out


@pytest.mark.parametrize("runs", ["first", "all"])
def test_a_run_outside_the_declared_space_is_not_chosen_when_one_in_it_exists(tmp_path, runs):
    _derivatives(tmp_path, "01", "1", runs=("1",), space="MNI152NLin2009cAsym")  # first in name order
    _derivatives(tmp_path, "01", "1", runs=("2",))
    [run] = fmri_inputs.plan_runs(_patterns(tmp_path), ["01"], runs=runs).values()
    assert run.key == "01_ses-1" and f"_run-2_space-{MNI6}_" in run.bold and f"in space {MNI6}" in run.choice


def test_two_runs_that_would_share_an_image_key_are_refused_naming_the_image_and_file(tmp_path):
    func = tmp_path / "sub-01" / "func"
    func.mkdir(parents=True)
    for res in ("1", "2"):  # the same run at two resolutions: res is not part of the key
        (func / f"sub-01_task-rest_space-{MNI6}_res-{res}_desc-preproc_bold.nii.gz").touch()
    with pytest.raises(InputError, match="sub-01_task-rest.*res-2") as error:
        fmri_inputs.plan_runs(_patterns(tmp_path), ["01"], runs="all")
    assert "would both be image" in str(error.value)


def test_beside_structural_sources_a_participant_stays_one_image(tmp_path):
    for session in ("1", "2"):
        _derivatives(tmp_path, "01", session)
    [(key, run)] = fmri_inputs.plan_runs(_patterns(tmp_path), ["01"], sessions=False).items()
    assert key == "01" and "ses-1" in run.bold and "sessions not told apart" in run.choice


def test_fmri_runs_is_configured_with_first_as_default_and_checked():
    assert cfg_module.FmriConfig().runs == "first" and cfg_module.FMRI_RUN_CHOICES == fmri_inputs.RUN_CHOICES
    with pytest.raises(ConfigError, match="fmri.runs"):
        cfg_module.FmriConfig(runs="best")  # the T1w branch's SNR choice reads voxels; the planning reads names


# --- the baselines: one RFCS vector per image ------------------------------------------------------------

def _image_split(tmp_path, sessions: dict[str, int]) -> pd.DataFrame:
    """A CNN-style split of participants (HC hc*, MWA mw*) with ``sessions[label]`` images each."""
    images = {f"{label}_ses-{s}": label for label, n in sessions.items() for s in range(1, n + 1)}
    pd.DataFrame({"participant_id": [f"sub-{s}" for s in sessions],
                  "group": ["HC" if s.startswith("hc") else "MWA" for s in sessions]}).to_csv(
        tmp_path / "participants.tsv", sep="\t", index=False)
    make_split_file(tmp_path / "participants.tsv", tmp_path / "split.tsv", ["HC", "MWA"], images=images, folds=2,
                    val_per_class=1, test_per_class=1)
    return read_split(tmp_path / "split.tsv")


def test_the_baselines_loso_never_trains_on_another_session_of_the_held_out_participant(tmp_path):
    sessions = {"hc1": 2, "hc2": 1, "hc3": 3, "mw1": 2, "mw2": 1, "mw3": 2}
    loso = leave_one_subject_out_images(_image_split(tmp_path, sessions), ["HC", "MWA"])
    assert loso["fold"].nunique() == len(sessions) and len(loso) == len(sessions) * sum(sessions.values())
    for _, rows in loso.groupby("fold"):
        tested = rows.loc[rows["split"] == "test", "subject"]
        assert tested.nunique() == 1  # one participant, with every image of it
        held_out = tested.iloc[0]
        assert len(tested) == sessions[held_out[4:]]
        assert not (rows.loc[rows["split"] == "train", "subject"] == held_out).any()


def test_the_baseline_job_reads_one_rfcs_vector_per_image(tmp_path):
    sessions = {"hc1": 2, "hc2": 1, "hc3": 2, "mw1": 1, "mw2": 2, "mw3": 1}
    split = _image_split(tmp_path, sessions)
    rng, regions = np.random.default_rng(0), ["Precuneus_L", "Cuneus_L", "Frontal_Mid_L"]
    rfcs = {}
    for pid in sorted(set(split["participant_id"])):  # the images: sub-hc1_ses-1, ...
        values = 0.2 + 0.01 * rng.standard_normal(3) + 0.3 * pid.startswith("sub-mw")  # every region tells
        rfcs[pid] = tmp_path / f"{pid}_rfcs.tsv"
        pd.DataFrame({"label": [1, 2, 3], "region": regions, "rfcs": values}).to_csv(rfcs[pid], sep="\t", index=False)
    pd.DataFrame({"label": [1, 2, 3], "name": regions, "hemisphere": "L", "tissue": "cortex",
                  "region": regions}).to_csv(tmp_path / "labels.tsv", sep="\t", index=False)
    outputs = jobs.BaselineOutputs(metrics=str(tmp_path / "metrics.tsv"), importance={"random_forest": str(tmp_path / "i.tsv")})
    table = jobs.baseline_job(rfcs, tmp_path / "split.tsv", bl.Task("t", ("HC", "MWA")), ["random_forest"],
                              bl.BaselineSettings(trees=10, importance_repeats=2, fit_splits=("train", "val")),
                              outputs, tmp_path / "labels.tsv")
    loso = table[table["model"] == "randomforestloso"].iloc[0]
    # every image tested once, pooled; the metrics count participants (a participant's images averaged)
    assert loso["n_subjects"] == len(sessions) < len(rfcs) and loso["accuracy"] == 1.0
    tested = split[split["split"] == "test"].groupby("fold")["subject"].nunique()
    assert list(table.loc[table["model"] == "randomforest", "n_subjects"]) == list(tested)  # the split's test participants


# --- the workflow's planning ------------------------------------------------------------------------------

@pytest.mark.slow  # a Snakemake dry run: 13 s wall (7 s of CPU) on the loaded 2-core VM
def test_the_workflow_plans_one_check_and_indicator_job_per_session(tmp_path):
    labels = {"hc1": "HC", "hc2": "HC", "hc3": "HC", "mw1": "MWoA", "mw2": "MWoA", "mw3": "MWoA"}
    for label in labels:
        for session in ("1", "2") if label == "hc1" else (None,):
            _derivatives(tmp_path / "fmriprep", label, session)
    for bold in (tmp_path / "fmriprep").rglob("*_desc-preproc_bold.nii.gz"):  # a job's inputs must exist
        fmri_inputs.companion(bold, "desc-brain_mask.nii.gz").touch()
    pd.DataFrame({"participant_id": [f"sub-{s}" for s in labels], "group": list(labels.values())}).to_csv(
        tmp_path / "participants.tsv", sep="\t", index=False)
    config = yaml.safe_load((REPO / "config" / "fmri_demo.yaml").read_text())
    config["tasks"] = config["tasks"][:1]
    config["fmri"].update({"derivatives_dir": "fmriprep", "sources": ["reho"]})
    config.update(participants_tsv="participants.tsv", splits={"folds": 2, "val_per_class": 1, "test_per_class": 1})
    jobs_ = dry_run(tmp_path, write_config(tmp_path / "config.yaml", **config))
    checked = sorted(j.subject for j in jobs_ if j.rule == "check_bold")
    assert checked == sorted(["hc1_ses-1", "hc1_ses-2", "hc2", "hc3", "mw1", "mw2", "mw3"])
    assert sorted(j.subject for j in jobs_ if j.rule == "fmri_indicators") == checked
