"""Bad input in a real run (issue 16, "Done when"): on a dataset the test makes, with one image of each
bad kind beside a clean one, the dry run warns of the header problems and plans; the input checks (not
brain extraction) report every problem in one run, in results/qc/inputs.tsv and in each job's log;
without --keep-going the run stops before any brain extraction, with it the clean subject finishes and
nothing of a bad subject is left half-written. A subject with two sessions and two runs comes out with
the session in its output names, the run choice in inputs.tsv and both sessions in one split set."""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from bad_inputs import BAD, make_bad

from conftest import grid_affine
from workflow_runner import TINY_CONFIG, dry_run, planned_jobs, run_snakemake, write_config

pytestmark = pytest.mark.slow

SHAPE = (96, 110, 112)  # 2 mm: fast for deepbet
AFFINE = grid_affine(SHAPE, 2.0, "LIA", oblique_deg=(8, -5, 6), center_mm=(0, -18, 10))
HEADER_KINDS = {"four_d", "voxels_5mm", "small_fov"}  # the dry run can see these from the header alone


@pytest.fixture(scope="module")
def head(mni_template) -> np.ndarray:
    """The MNI head on an oblique 2 mm LIA grid: a real head for brain extraction."""
    from nilearn.image import resample_img

    img = resample_img(nib.load(mni_template.head), target_affine=AFFINE, target_shape=SHAPE,
                       interpolation="linear", force_resample=True, copy_header=True)
    return img.get_fdata(dtype=np.float32)


def _label(kind: str) -> str:
    return "bad" + kind.replace("_", "")


def _dataset(root: Path, head: np.ndarray) -> Path:
    bids = root / "bids"
    rows = ["participant_id\tgroup", "sub-good\tHC"]
    good = bids / "sub-good" / "anat" / "sub-good_T1w.nii.gz"
    good.parent.mkdir(parents=True)
    nib.save(nib.Nifti1Image(head, AFFINE), good)
    for i, kind in enumerate(sorted(BAD)):
        label = _label(kind)
        make_bad(kind, head, AFFINE, bids / f"sub-{label}" / "anat" / f"sub-{label}_T1w.nii.gz")
        rows.append(f"sub-{label}\t{['HC', 'migraine'][i % 2]}")
    (bids / "participants.tsv").write_text("\n".join(rows) + "\n")
    write_config(root / "config.yaml", **TINY_CONFIG)
    return root


def _labels() -> list[str]:
    return ["good"] + [_label(k) for k in sorted(BAD)]


def _masks(labels) -> list[str]:
    return [f"results/preproc/sub-{s}/anat/sub-{s}_desc-brain_mask.nii.gz" for s in labels]


@pytest.fixture(scope="module")
def stopped_run(head, tmp_path_factory):
    """The dataset after a dry run and a run without --keep-going (both outputs kept)."""
    wd = _dataset(tmp_path_factory.mktemp("bad"), head)
    dry = run_snakemake(wd, wd / "config.yaml", "--dry-run", *_masks(_labels()))
    run = run_snakemake(wd, wd / "config.yaml", "--cores", "2", *_masks(_labels()), check=False, timeout_s=900)
    return wd, dry.stdout, run


def test_the_dry_run_plans_and_warns_of_every_header_problem(stopped_run):
    wd, dry, _ = stopped_run
    for kind in HEADER_KINDS:
        label = _label(kind)
        line = next((row for row in dry.splitlines() if f"sub-{label}" in row and "Input check will fail" in row), "")
        assert f"bids/sub-{label}/anat/sub-{label}_T1w.nii.gz" in line and BAD[kind][1] in line, dry[-3000:]


def test_the_checks_report_every_problem_in_one_run_before_any_brain_extraction(stopped_run):
    wd, _, run = stopped_run
    assert run.returncode != 0
    table = pd.read_csv(wd / "results" / "qc" / "inputs.tsv", sep="\t", keep_default_na=False).set_index("subject")
    assert table.loc["sub-good", "status"] == "ok"
    for kind, (_, words) in BAD.items():
        row = table.loc[f"sub-{_label(kind)}"]
        assert row["status"] == "failed" and words in row["problem"], (kind, row.to_dict())
    assert not (wd / "results" / "preproc").exists(), "brain extraction ran before every image was checked"
    assert not (wd / "results" / "logs" / "brain_extraction").exists()


def test_each_failed_image_has_its_reason_in_its_job_log(stopped_run):
    wd, _, _ = stopped_run
    logs = wd / "results" / "logs"
    for kind, (_, words) in BAD.items():
        label = _label(kind)
        text = (logs / "check_input" / f"sub-{label}.log").read_text()
        assert f"sub-{label}" in text and f"sub-{label}_T1w.nii.gz" in text and words in text, text
    failed = [p for p in (logs / "accept_input").glob("*.log") if "failed" in p.read_text()]
    assert failed, "the run stopped at an accept_input job, whose log says why"
    for path in failed:
        text = path.read_text()
        assert path.stem in text and "_T1w.nii.gz" in text and "Traceback" not in text


def test_keep_going_finishes_the_clean_subject_and_leaves_nothing_of_the_bad(stopped_run):
    wd, _, _ = stopped_run
    run = run_snakemake(wd, wd / "config.yaml", "--cores", "2", "--keep-going", *_masks(_labels()), check=False,
                        timeout_s=1200)
    assert run.returncode != 0
    assert (wd / _masks(["good"])[0]).is_file(), run.stdout[-4000:]
    for label in _labels()[1:]:
        assert f"sub-{label}" in (wd / "results" / "logs" / "accept_input" / f"sub-{label}.log").read_text()
        leftovers = [p for p in (wd / "results").rglob(f"*sub-{label}*")
                     if "logs" not in p.parts and "benchmarks" not in p.parts and p.name != f"sub-{label}_inputs.tsv"]
        assert leftovers == [], leftovers
    assert not list((wd / "results").rglob("*.tmp*")), "a temporary file was left behind"


def test_two_sessions_and_two_runs(head, tmp_path):
    bids = tmp_path / "bids"
    rows = ["participant_id\tgroup"]
    for i in range(6):  # three controls and three patients: the least a 2-fold split accepts
        label, group = f"s{i}", ["HC", "migraine"][i % 2]
        rows.append(f"sub-{label}\t{group}")
        names = ([f"ses-a/anat/sub-{label}_ses-a_run-1_T1w.nii.gz", f"ses-a/anat/sub-{label}_ses-a_run-2_T1w.nii.gz",
                  f"ses-b/anat/sub-{label}_ses-b_T1w.nii.gz"] if i == 0 else [f"anat/sub-{label}_T1w.nii.gz"])
        for name in names:
            path = bids / f"sub-{label}" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(head, AFFINE), path)
    (bids / "participants.tsv").write_text("\n".join(rows) + "\n")
    configfile = write_config(tmp_path / "config.yaml", **{**TINY_CONFIG, "runs": "last"})

    planned = run_snakemake(tmp_path, configfile, "--dry-run", "preprocess_all").stdout
    jobs = planned_jobs(planned)
    images = {j.subject for j in jobs if j.rule == "brain_extraction"}
    assert images == {"s0_ses-a", "s0_ses-b", "s1", "s2", "s3", "s4", "s5"}
    outputs = [line.split(": ", 1)[1] for line in planned.splitlines() if line.strip().startswith("output: ")]
    assert any("preproc/sub-s0_ses-b/anat/sub-s0_ses-b_space-MNI152NLin6Asym_desc-brain_T1w.nii.gz" in o for o in outputs)
    assert any("slices/source-T1w/sub-s0_ses-a_size-112_slices.npy" in o for o in outputs)
    # every per-image rule writes a benchmark (where the time goes)
    blocks = re.split(r"\n(?=\s*(?:local)?rule \w+:)", planned)
    per_image = [b for b in blocks if "subject=" in b]
    assert per_image and all("benchmark: results/benchmarks/" in b for b in per_image), \
        [b.splitlines()[0] for b in per_image if "benchmark:" not in b]

    run_snakemake(tmp_path, configfile, "--cores", "2", "results/qc/inputs.tsv", "results/splits/task-migraine.tsv")
    table = pd.read_csv(tmp_path / "results" / "qc" / "inputs.tsv", sep="\t", keep_default_na=False)
    s0 = table[table["subject"] == "sub-s0"].set_index(["session", "run"])
    assert s0.loc[("ses-a", "run-2"), "image"] == "sub-s0_ses-a" and s0.loc[("ses-a", "run-2"), "status"] == "ok"
    assert "last of 2" in s0.loc[("ses-a", "run-2"), "choice"]
    assert s0.loc[("ses-a", "run-1"), "status"] == "not used"
    assert s0.loc[("ses-b", "n/a"), "image"] == "sub-s0_ses-b"
    split = pd.read_csv(tmp_path / "results" / "splits" / "task-migraine.tsv", sep="\t")
    sessions = split[split["subject"] == "sub-s0"]
    assert set(sessions["participant_id"]) == {"sub-s0_ses-a", "sub-s0_ses-b"}
    assert (sessions.groupby("fold")["split"].nunique() == 1).all()


def test_one_dry_run_shows_a_missing_image_a_4d_image_and_a_5mm_image(head, tmp_path):
    """The issue's example: three problems that used to need three runs."""
    bids = tmp_path / "bids"
    make_bad("four_d", head, AFFINE, bids / "sub-fourd" / "anat" / "sub-fourd_T1w.nii.gz")
    make_bad("voxels_5mm", head, AFFINE, bids / "sub-coarse" / "anat" / "sub-coarse_T1w.nii.gz")
    (bids / "participants.tsv").write_text("participant_id\tgroup\nsub-fourd\tHC\nsub-coarse\tmigraine\nsub-noimage\tHC\n")
    configfile = write_config(tmp_path / "config.yaml", **TINY_CONFIG)
    done = run_snakemake(tmp_path, configfile, "--dry-run", check=False)
    assert done.returncode != 0
    out = done.stdout
    assert "subject sub-noimage" in out and "no T1w image" in out, out[-3000:]
    assert "subject sub-fourd, file" in out and "4D" in out
    assert "subject sub-coarse, file" in out and "voxel size" in out


def test_subjects_runs_the_selected_while_other_rows_only_warn(head, tmp_path):
    bids = tmp_path / "bids"
    for label in ("a1", "a2", "norow"):
        path = bids / f"sub-{label}" / "anat" / f"sub-{label}_T1w.nii.gz"
        path.parent.mkdir(parents=True)
        nib.save(nib.Nifti1Image(head, AFFINE), path)
    (bids / "participants.tsv").write_text("participant_id\tgroup\nsub-a1\tHC\nsub-a2\tcluster\n")
    configfile = write_config(tmp_path / "config.yaml", **TINY_CONFIG)
    assert run_snakemake(tmp_path, configfile, "--dry-run", check=False).returncode != 0  # both problems stop a full run
    done = run_snakemake(tmp_path, configfile, "--dry-run", "--config", "subjects=a1", "--",
                         "results/qc/inputs.tsv")
    assert "Left out" in done.stdout and "sub-a2" in done.stdout and "sub-norow" in done.stdout
    assert {j.subject for j in dry_run(tmp_path, configfile, "--config", "subjects=a1", "--", "results/qc/inputs.tsv")
            if j.subject} == {"a1"}


def test_a_subjects_subset_missing_a_class_leaves_that_task_out_with_a_warning(tmp_path):
    """`subjects` with no image of some class of a task (a single-subject rerun, say): the run plans the
    other tasks and says which it left out, instead of failing while it builds the graph."""
    configfile = write_config(tmp_path / "config.yaml", results_dir=str(tmp_path / "results"),
                              subjects=["hc001", "hc002", "migraine001", "migraine002"])
    done = run_snakemake(tmp_path, configfile, "--dry-run")
    assert "Task 'apth' left out of this run: no image of class APTH" in done.stdout
    assert "Task 'ppth' left out" in done.stdout and "Task 'migraine' left out" not in done.stdout
    tasks = {job.wildcards["task"] for job in planned_jobs(done.stdout) if "task" in job.wildcards}
    assert tasks == {"migraine"}
