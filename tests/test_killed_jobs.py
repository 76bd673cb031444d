"""A job killed mid-way (SIGKILL to Snakemake's whole process group, as a crash or a cancelled cluster
job would) leaves nothing that Snakemake takes as done, and the rerun completes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import nibabel as nib
import pytest

from workflow_runner import (
    HELD_BACK,
    TRAIN_TARGET,
    add_subject,
    copy_workdir,
    dry_run,
    preprocessed_workdir,
    run_snakemake,
    snakemake_command,
)

pytestmark = pytest.mark.slow


def start(workdir: Path, *args: str) -> subprocess.Popen:
    """Snakemake in a session of its own, so that the kill reaches it and every job it started."""
    log = open(workdir / "snakemake.out", "w")
    return subprocess.Popen(snakemake_command(workdir, workdir / "config.yaml", "--cores", "2", *args),
                            cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def kill_when(proc: subprocess.Popen, started, timeout_s: float = 600) -> None:
    """SIGKILL the process group as soon as started() is true (the job is under way)."""
    end = time.monotonic() + timeout_s
    while not started():
        assert proc.poll() is None, "Snakemake ended before the job could be killed"
        assert time.monotonic() < end, "the job never started"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def not_done(jobs, rule: str) -> list:
    return [j for j in jobs if j.rule == rule]


def test_killed_preprocessing_job_is_redone(tmp_path):
    wd = copy_workdir(preprocessed_workdir(), tmp_path / "wd")
    add_subject(wd, HELD_BACK)
    log = wd / "results" / "logs"
    proc = start(wd, "preprocess_all")
    # the subject's first job has written to its log: it is running
    kill_when(proc, lambda: any(p.stat().st_size > 0 for p in log.rglob(f"sub-{HELD_BACK}*.log")))

    # Snakemake's own view: the killed job is not done (planned again, as missing or incomplete)
    jobs = dry_run(wd, wd / "config.yaml", "preprocess_all")
    killed = [j for j in jobs if j.subject == HELD_BACK]
    assert killed, "the killed subject has work left"
    # every file of the subject that is there is whole (atomic writes): none is truncated
    for image in (wd / "results" / "preproc" / f"sub-{HELD_BACK}").rglob("*.nii.gz"):
        nib.load(image).get_fdata()

    # as after any crash: release Snakemake's lock on the folder, then the same command again
    run_snakemake(wd, wd / "config.yaml", "--unlock", "--cores", "1")
    # one subject's chain runs alone: its two heaviest jobs may take both cores (the workflow claims one
    # thread each, so that a cohort's subjects run side by side); what is tested is the redo, not the threads
    run_snakemake(wd, wd / "config.yaml", "--cores", "2", "--set-threads", "brain_extraction=2", "register_to_mni=2",
                  "--", "preprocess_all")
    assert dry_run(wd, wd / "config.yaml", "preprocess_all") == []
    assert (wd / "results" / "slices" / "source-T1w" / f"sub-{HELD_BACK}_size-112_slices.npy").is_file()


def test_killed_training_job_is_redone(tmp_path):
    wd = copy_workdir(preprocessed_workdir(), tmp_path / "wd")
    train_log = wd / "results" / "logs" / "train" / "source-T1w_task-migraine_model-vittinydemo_fold-1.log"
    proc = start(wd, TRAIN_TARGET)
    # killed once the job logs its first line (the subjects it trains on): the job is under way, with
    # the model, the epoch and the scoring still to come, so its outputs are not written yet
    kill_when(proc, lambda: train_log.is_file() and "task migraine" in train_log.read_text())

    model_dir = wd / Path(TRAIN_TARGET).parent
    jobs = dry_run(wd, wd / "config.yaml", TRAIN_TARGET)
    assert not_done(jobs, "train_fold"), "the killed training job is not taken as done"
    # whatever the killed job left under its output names, Snakemake knows it as incomplete
    left = [p.name for p in model_dir.glob("*") if p.is_file()] if model_dir.is_dir() else []
    if left:
        reason = not_done(jobs, "train_fold")[0].reason
        assert "incomplete" in reason.lower() or "missing" in reason.lower(), reason

    run_snakemake(wd, wd / "config.yaml", "--unlock", "--cores", "1")
    run_snakemake(wd, wd / "config.yaml", "--cores", "2", TRAIN_TARGET)
    assert dry_run(wd, wd / "config.yaml", TRAIN_TARGET) == []
    import torch

    torch.load(model_dir / "model.pt", map_location="cpu", weights_only=False)
