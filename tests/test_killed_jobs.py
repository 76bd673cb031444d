"""A training job killed mid-way (SIGKILL to Snakemake's whole process group, as a crash or a cancelled
cluster job would) leaves nothing that Snakemake takes as done, and the rerun completes. (A killed
preprocessing job: tests/test_incremental.py, on the subject it adds.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from workflow_runner import (
    TRAIN_TARGET,
    copy_workdir,
    dry_run,
    kill_when,
    preprocessed_workdir,
    run_snakemake,
    start_snakemake,
)

pytestmark = pytest.mark.slow


def not_done(jobs, rule: str) -> list:
    return [j for j in jobs if j.rule == rule]


def test_killed_training_job_is_redone(tmp_path):
    wd = copy_workdir(preprocessed_workdir(), tmp_path / "wd")
    train_log = wd / "results" / "logs" / "train" / "source-T1w_task-migraine_model-vittinydemo_fold-1.log"
    proc = start_snakemake(wd, TRAIN_TARGET)
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
