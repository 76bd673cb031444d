"""Incremental runs on a generated BIDS cohort: a new subject or a replaced scan recomputes that subject
alone (plus the cohort-wide tables whose inputs changed), the other subjects' outputs stay untouched,
a single subject can be processed on its own, and a run killed while the input-check table is written or
during a new subject's preprocessing (SIGKILL to Snakemake's whole process group) leaves nothing Snakemake
takes as done, redoes no other subject and completes on the rerun.
Asserted from Snakemake's dry-run job list and from file modification times."""

from __future__ import annotations

import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from workflow_runner import (
    HELD_BACK,
    add_subject,
    copy_workdir,
    dry_run,
    kill_when,
    preprocessed_workdir,
    run_snakemake,
    start_snakemake,
)

pytestmark = pytest.mark.slow


def snapshot(results: Path) -> dict[str, tuple[int, str]]:
    """(mtime in ns, sha1) of every output file (logs and benchmarks aside)."""
    out = {}
    for path in sorted(results.rglob("*")):
        rel = path.relative_to(results).as_posix()
        if path.is_file() and not rel.startswith(("logs/", "benchmarks/")):
            out[rel] = (path.stat().st_mtime_ns, hashlib.sha1(path.read_bytes()).hexdigest())
    return out


def of_subject(files: dict, label: str) -> dict:
    return {k: v for k, v in files.items() if f"sub-{label}" in k}


def without_subject(files: dict, label: str) -> dict:
    return {k: v for k, v in files.items() if f"sub-{label}" not in k and "/sub-" in f"/{k}"}


@pytest.fixture(scope="module")
def base() -> Path:
    return preprocessed_workdir()


@pytest.fixture(scope="module")
def forced_jobs(base):
    """Every job of preprocess_all, from a dry run that forces everything."""
    return dry_run(base, base / "config.yaml", "--forceall", "preprocess_all")


@pytest.fixture(scope="module")
def per_subject_rules(forced_jobs) -> set[str]:
    """The rules that run once per subject in preprocess_all."""
    rules = {j.rule for j in forced_jobs if j.subject == "hc001"}
    assert {"make_slices", "parcellate"} <= rules, rules
    return rules


@pytest.fixture(scope="module")
def cohort_rules(forced_jobs) -> set[str]:
    """Rules of preprocess_all that read every subject (no subject wildcard), as the workflow defines them."""
    return {j.rule for j in forced_jobs if j.subject is None}


def test_the_shared_cohort_is_complete(base):
    assert dry_run(base, base / "config.yaml", "preprocess_all") == [], "a finished run has nothing left to do"


def test_adding_a_subject_runs_only_that_subject_even_when_killed_midway(base, per_subject_rules, cohort_rules,
                                                                        tmp_path):
    wd = copy_workdir(base, tmp_path / "wd")
    before = snapshot(wd / "results")
    add_subject(wd, HELD_BACK)

    jobs = dry_run(wd, wd / "config.yaml", "preprocess_all")
    assert {j.subject for j in jobs if j.subject} == {HELD_BACK}
    assert {j.rule for j in jobs if j.subject} == per_subject_rules
    # the cohort-wide jobs that rerun are those reading every subject (the QC table), nothing else
    assert {j.rule for j in jobs if not j.subject} <= cohort_rules
    assert not any(j.rule == "build_atlas" for j in jobs), "the atlas does not depend on subjects"

    # the documented single-subject commands plan exactly that subject's jobs
    only = dry_run(wd, wd / "config.yaml", "--config", f"subjects={HELD_BACK}", "--", "preprocess_all")
    assert {j.subject for j in only if j.subject} == {HELD_BACK}
    targets = dry_run(wd, wd / "config.yaml", f"results/qc/subjects/sub-{HELD_BACK}_qc.tsv",
                      f"results/slices/source-T1w/sub-{HELD_BACK}_size-112_slices.npy")
    # ...and the input-check table, which every subject's acceptance comes after (the others' rows exist)
    assert {j.subject for j in targets if j.rule != "input_table"} == {HELD_BACK}
    assert {j.rule for j in targets if j.subject} <= per_subject_rules
    assert [j.rule for j in targets if not j.subject] == ["input_table"]

    # SIGKILL to Snakemake's process group (a crash, a cancelled cluster job) while the cohort's input table
    # is written anew: the previous table stays (an `update` output), so no other subject is accepted and
    # preprocessed again (before, Snakemake deleted the table at the job's start and the rerun redid them all)
    scripts = wd / ".snakemake" / "scripts"
    proc = start_snakemake(wd, "preprocess_all")
    kill_when(proc, lambda: any(scripts.glob("*.input_table.py")))  # the job's script exists while it runs
    after_crash = dry_run(wd, wd / "config.yaml", "preprocess_all")
    assert "input_table" in {j.rule for j in after_crash}, "killed before the table was done"
    assert {j.subject for j in after_crash if j.subject} == {HELD_BACK}
    run_snakemake(wd, wd / "config.yaml", "--unlock", "--cores", "1")

    # ...and during the new subject's brain extraction; nothing the killed job leaves is taken as done
    log = wd / "results" / "logs"
    proc = start_snakemake(wd, "preprocess_all")
    extraction_log = log / "brain_extraction" / f"sub-{HELD_BACK}.log"
    kill_when(proc, lambda: extraction_log.is_file() and extraction_log.stat().st_size > 0)
    assert any(j.subject == HELD_BACK for j in dry_run(wd, wd / "config.yaml", "preprocess_all")), "work left"
    for image in (wd / "results" / "preproc" / f"sub-{HELD_BACK}").rglob("*.nii.gz"):
        nib.load(image).get_fdata()  # atomic writes: none is truncated

    # as after any crash: release Snakemake's lock on the folder, then the same command again; one subject's
    # chain runs alone, so its two heaviest jobs may take both cores (the workflow claims one thread each)
    run_snakemake(wd, wd / "config.yaml", "--unlock", "--cores", "1")
    run_snakemake(wd, wd / "config.yaml", "--cores", "2", "--set-threads", "brain_extraction=2", "register_to_mni=2",
                  "--", "preprocess_all")
    after = snapshot(wd / "results")
    assert without_subject(after, HELD_BACK) == without_subject(before, HELD_BACK), "other subjects untouched"
    new = of_subject(after, HELD_BACK)
    assert any(k.endswith("_slices.npy") for k in new) and any(k.endswith("_dseg.nii.gz") for k in new)
    assert dry_run(wd, wd / "config.yaml", "preprocess_all") == []


def test_replacing_a_scan_recomputes_that_subject(base, per_subject_rules, cohort_rules, tmp_path):
    wd = copy_workdir(base, tmp_path / "wd")
    subject = "hc002"
    before = snapshot(wd / "results")
    t1w = wd / "bids" / f"sub-{subject}" / "anat" / f"sub-{subject}_T1w.nii.gz"
    img = nib.load(t1w)
    # a rescan: the same head, brighter, with a little different noise
    data = np.asarray(img.dataobj, dtype=np.float32) * 1.1
    data += np.random.default_rng(0).normal(0, 2, data.shape).astype(np.float32) * (data > 0)
    nib.save(nib.Nifti1Image(data, img.affine, img.header), t1w)

    jobs = dry_run(wd, wd / "config.yaml", "preprocess_all")
    assert {j.subject for j in jobs if j.subject} == {subject}
    assert {j.rule for j in jobs if j.subject} == per_subject_rules
    assert {j.rule for j in jobs if not j.subject} <= cohort_rules

    run_snakemake(wd, wd / "config.yaml", "--cores", "2", "preprocess_all")
    after = snapshot(wd / "results")
    assert without_subject(after, subject) == without_subject(before, subject), "other subjects untouched"
    changed = of_subject(after, subject)
    old = of_subject(before, subject)
    assert changed.keys() == old.keys()
    assert all(changed[k][0] > old[k][0] for k in changed), "every output of the subject was remade"
    brain = next(k for k in changed if k.endswith(f"sub-{subject}_desc-brain_T1w.nii.gz"))
    assert changed[brain][1] != old[brain][1], "from the new scan"


def test_provenance_never_makes_other_jobs_rerun(base, tmp_path):
    """Provenance is rewritten when the config changes, and nothing else reruns because of it."""
    wd = copy_workdir(base, tmp_path / "wd")
    run_snakemake(wd, wd / "config.yaml", "--cores", "1", "--config", "evaluation={'aggregation': 'max'}", "--",
                  "provenance")
    assert (wd / "results" / "provenance" / "environment.json").is_file()
    assert dry_run(wd, wd / "config.yaml", "preprocess_all") == []
