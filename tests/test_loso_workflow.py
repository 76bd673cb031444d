"""The workflow plans the fMRI paper's CNNs and leave-one-subject-out: one training job per participant of
each task, the metrics table reading every fold's subject predictions for the pooled rows, and torchvision
weights checked when the run is planned (dry runs on the demo cohort of config.yaml: 16 subjects per task)."""

from __future__ import annotations

import collections

import pytest

from workflow_runner import planned_jobs, run_snakemake, write_config


@pytest.mark.slow
def test_loso_plans_a_fold_per_participant_and_the_pooled_metrics_read_every_fold(tmp_path):
    configfile = write_config(tmp_path / "config.yaml", splits={"scheme": "loso", "val_per_class": 1},
                              model={"encoder": "resnet18"})
    done = run_snakemake(tmp_path, configfile, "--dry-run", "--printshellcmds", timeout_s=300)
    jobs = planned_jobs(done.stdout)
    trained = collections.Counter(job.wildcards["task"] for job in jobs if job.rule == "train_fold")
    assert trained == {"migraine": 16, "apth": 16, "ppth": 16}  # 8 controls + 8 patients per task, not splits.folds
    folds = {int(job.wildcards["fold"]) for job in jobs if job.rule == "train_fold"}
    assert folds == set(range(1, 17))
    assert all(job.wildcards["model"] == "resnet18" for job in jobs if job.rule == "train_fold")
    assert "resnet18 weights: none, random initialisation" in done.stdout
    block = done.stdout.split("rule metrics_table:")[1].split("\n\n")[0]
    inputs = next(line for line in block.splitlines() if line.strip().startswith("input:"))
    assert inputs.count("predictions_subjects.tsv") == inputs.count("metrics.tsv") == 48


@pytest.mark.slow
def test_imagenet_weights_missing_from_torchs_cache_stop_the_run_at_planning(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    configfile = write_config(tmp_path / "config.yaml", model={"encoder": "googlenet", "pretrained": True})
    done = run_snakemake(tmp_path, configfile, "--dry-run", check=False, timeout_s=300)
    text = " ".join(done.stdout.split())
    assert done.returncode != 0 and "train_fold" not in [job.rule for job in planned_jobs(done.stdout)]
    assert "download https://download.pytorch.org/models/googlenet-1378be20.pth" in text
    assert "empty-torch-home/hub/checkpoints" in text
