"""The GPU profile (config/gpu.yaml, issue 17): the paper's set-up, checked where it can fail early, and run
end to end on the CPU at tiny sizes through the same rules (device cuda planned, jobs falling back to the
CPU because torch sees no GPU here).

BiomedCLIP's ViT-B/16 at 224 px is far too slow for a CPU test (about 35 GFLOP per slice forward) and its
weights cannot be downloaded here, so the end-to-end run swaps in the registry's small ViT
(``vit_tiny_demo``: BiomedCLIP's module layout and token grid at 112 px) with random initial weights, as
the other workflow tests do; the loading of a local BiomedCLIP checkpoint is tested in
tests/test_biomedclip_loader.py.
"""

from __future__ import annotations

import json

import pytest
import yaml

from workflow_runner import (
    REPO,
    TINY_CONFIG,
    copy_workdir,
    planned_jobs,
    preprocessed_workdir,
    run_snakemake,
    write_config,
)

PROFILE = yaml.safe_load((REPO / "config" / "gpu.yaml").read_text())
# the demo cohort (16 subjects per task) is too small for 6 + 6 validation and test subjects per class
SMALL_SPLITS = {"splits": {"folds": 2, "val_per_class": 1, "test_per_class": 1}}


def merged(*layers: dict) -> dict:
    out: dict = {}
    for layer in layers:
        for key, value in layer.items():
            out[key] = merged(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def plan(tmp_path, *layers: dict):
    """A dry run of the profile (over config.yaml, as Snakemake reads it) on the demo cohort."""
    configfile = write_config(tmp_path / "config.yaml", **merged(PROFILE, SMALL_SPLITS, *layers))
    return run_snakemake(tmp_path, configfile, "--dry-run", check=False, timeout_s=300)


@pytest.mark.slow
def test_missing_local_weights_stop_the_run_at_planning_with_where_to_put_them(tmp_path):
    done = plan(tmp_path)
    assert done.returncode != 0
    text = " ".join(done.stdout.split())
    assert "resources/biomedclip" in text and "open_clip_pytorch_model.bin" in text
    assert "huggingface.co/microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224" in text
    assert "train_fold" not in [job.rule for job in planned_jobs(done.stdout)]


@pytest.mark.slow
def test_no_checkpoint_offline_stops_at_planning_instead_of_trying_the_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    done = plan(tmp_path, {"model": {"checkpoint": None}})
    assert done.returncode != 0
    text = " ".join(done.stdout.split())
    assert "not in the Hugging Face cache, and the hub cannot be reached" in text
    assert "model.checkpoint" in text and "open_clip_pytorch_model.bin" in text


@pytest.mark.slow
def test_with_the_weights_in_place_gpu_jobs_claim_a_gpu_on_the_gpu_partition(tmp_path):
    folder = tmp_path / "resources" / "biomedclip"
    folder.mkdir(parents=True)
    (folder / "open_clip_pytorch_model.bin").write_bytes(b"")  # planning looks for the file, jobs read it
    done = plan(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:]
    jobs = [job for job in planned_jobs(done.stdout) if job.rule == "train_fold"]
    assert len(jobs) == 3 * 2  # three tasks, two folds
    assert all(job.wildcards["model"] == "biomedclip" for job in jobs)
    for rule in ("train_fold", "explain_fold"):
        block = done.stdout[done.stdout.index(f"rule {rule}:"):]
        resources = next(line for line in block.splitlines() if line.strip().startswith("resources:"))
        assert "gpu=1" in resources and "slurm_partition=gpu" in resources, resources
    assert "biomedclip weights: " in done.stdout and "open_clip_pytorch_model.bin" in done.stdout


@pytest.mark.slow
def test_the_gpu_profile_runs_end_to_end_on_the_cpu_at_tiny_sizes(tmp_path):
    workdir = copy_workdir(preprocessed_workdir(), tmp_path / "wd")
    tiny = {
        # the preprocessed cohort: its BIDS folder, groups and task; its slices (112 px) are reused
        **{key: TINY_CONFIG[key] for key in ("bids_dir", "results_dir", "groups", "tasks")},
        "slices": {"size": 112},
        "model": {"encoder": "vit_tiny_demo", "checkpoint": None},  # the stand-in (module docstring)
        "training": {"epochs": 2, "batch_size": 16, "max_slices_per_subject": 8},
        # the profile compiles (compute.compile); inductor compiling a ViT on the CPU took most of this
        # test's 519 s, and the compiled path is tested with the eager backend (tests/test_bench_gpu.py)
        "compute": {"threads_per_job": 1, "compile": False},
        "explain": {"sanity_patients": 1, "sanity_repeats": 1, "bootstrap": 10},
    }
    configfile = write_config(workdir / "config.yaml", **merged(PROFILE, SMALL_SPLITS, tiny))
    run_snakemake(workdir, configfile, "--cores", "2", timeout_s=1500)
    results = workdir / "results"
    train_log = (results / "logs" / "train" / "source-T1w_task-migraine_model-vittinydemo_fold-1.log").read_text()
    assert "claimed a GPU" in train_log and "running on the CPU" in train_log  # planned on cuda, ran here
    history = (results / "train" / "source-T1w" / "task-migraine" / "model-vittinydemo" / "fold-1" / "history.tsv").read_text()
    assert len(history.strip().splitlines()) == 1 + 2
    summary = json.loads((results / "explain" / "source-T1w" / "task-migraine" / "model-vittinydemo" / "fold-2"
                          / "explain.json").read_text())
    assert summary["method"] == "gradcam" and summary["target_layer"] == "trunk.blocks[-1].norm1"
    assert summary["region_statistic"] == "max" and summary["patients"] == "test"
    assert (results / "tables" / "source-T1w_task-migraine_regions.tsv").is_file()
    assert not any((results / "train").rglob("checkpoint_*.pt")), "resume states are removed at the end"
