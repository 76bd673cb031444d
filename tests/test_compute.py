"""Where training and explanation jobs run: a GPU is claimed only when one is used, so CPU jobs run side
by side, and the run says how many (headmri.compute, config section `compute`, rules train_fold and
explain_fold)."""

from __future__ import annotations

import re

import pytest

from headmri.compute import DEFAULT_THREADS, JobCompute, job_device, plan
from headmri.config import ComputeConfig, load
from headmri.errors import ConfigError

from workflow_runner import REPO, run_snakemake, write_config


def test_cpu_jobs_claim_no_gpu_and_cuda_jobs_claim_one():
    assert plan("cpu").gpu_resources == {}
    assert plan("cuda").gpu_resources == {"gpu": 1}


def test_auto_takes_cuda_only_when_torch_sees_a_gpu(monkeypatch, tmp_path):
    import torch

    import headmri.compute

    monkeypatch.setattr(headmri.compute, "GPU_DRIVER_PATHS", (str(tmp_path),))  # a driver is there: torch decides
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert plan("auto").device == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert plan("auto").device == "cuda"


def test_auto_is_the_cpu_without_a_gpu_driver_whatever_torch_would_say(monkeypatch, tmp_path):
    import torch

    import headmri.compute

    monkeypatch.setattr(headmri.compute, "GPU_DRIVER_PATHS", (str(tmp_path / "no-driver"),))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert plan("auto").device == "cpu"


def test_a_cluster_job_keeps_the_device_the_planning_process_chose(monkeypatch):
    import torch

    # the login node saw no GPU; the compute node that reads the workflow again sees one
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert plan("auto", inherited="cpu").device == "cpu"
    assert plan("cpu", inherited="cuda").device == "cpu", "an explicit device is never overridden"


def test_threads_default_to_one_on_the_cpu_and_follow_the_config():
    assert plan("cpu").threads == DEFAULT_THREADS["cpu"] == 1
    assert plan("cuda").threads == DEFAULT_THREADS["cuda"]
    assert plan("cpu", 3).threads == 3


def test_the_run_says_how_many_cpu_jobs_run_side_by_side():
    line = plan("cpu", 2).summary(cores=8)
    assert "device cpu" in line and "2 threads per job" in line and "up to 4 side by side at --cores 8" in line
    assert "up to 1 at once" in plan("cuda").summary(cores=16, gpu_limit=1)
    assert "cluster job asking for 8 CPUs and a GPU" in plan("cuda").summary(cores=1, jobs=100)
    assert "(compute.device: auto)" in JobCompute("cpu", 1, setting="auto").summary(cores=2)


def test_a_job_runs_on_the_device_its_rule_claimed():
    assert job_device(0, cuda_available=True) == ("cpu", None), "no GPU claimed: CPU even where one is visible"
    assert job_device(1, cuda_available=True) == ("cuda", None)
    device, warning = job_device(1, cuda_available=False)
    assert device == "cpu" and "claimed a GPU" in warning


def test_the_config_section_is_typed_and_checked(tmp_path):
    cfg = load(REPO / "config.yaml", {"compute": {"device": "cpu", "threads_per_job": "2"}})
    assert cfg.compute == ComputeConfig(device="cpu", threads_per_job=2), "--config passes nested numbers as strings"
    assert load(REPO / "config.yaml").compute == ComputeConfig(device="auto", threads_per_job=None)
    with pytest.raises(ConfigError):
        ComputeConfig(device="tpu")
    with pytest.raises(ConfigError):
        ComputeConfig(threads_per_job=0)
    with pytest.raises(Exception, match="compute"):  # the schema rejects it before the typed config
        load(REPO / "config.yaml", {"compute": {"device": "gpu"}})


def _planned(stdout: str, rule: str) -> dict[str, str]:
    """threads and resources of the first job of ``rule`` in a dry run's printout."""
    block = re.search(rf"^rule {rule}:\n((?:    .*\n)+)", stdout, flags=re.MULTILINE)
    assert block, f"no {rule} job planned:\n{stdout[-3000:]}"
    fields = dict(line.strip().split(": ", 1) for line in block.group(1).splitlines() if ": " in line)
    return {"threads": fields.get("threads", "1"), "resources": fields["resources"]}


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_the_rules_claim_a_gpu_only_on_cuda(tmp_path, device):
    # the demo configuration plans from the config alone (no input files needed for a dry run)
    configfile = write_config(tmp_path / "config.yaml", compute={"device": device, "threads_per_job": 2},
                              model={"encoder": "vit_tiny_demo"})
    target = "results/explain/source-T1w/task-migraine/model-vittinydemo/fold-1/regions.tsv"
    done = run_snakemake(tmp_path, configfile, "--dry-run", "--cores", "4", "--", target, timeout_s=300)
    for rule in ("train_fold", "explain_fold"):
        job = _planned(done.stdout, rule)
        assert ("gpu=1" in job["resources"]) == (device == "cuda"), (rule, job)
        assert job["threads"] == "2", (rule, job)
    expected = ("up to 2 side by side at --cores 4" if device == "cpu"
                else "up to 1 at once (--cores 4, --resources gpu=1)")  # profiles/default's one GPU
    assert f"device {device}, 2 threads per job; {expected}" in done.stdout


def test_cuda_jobs_go_to_the_gpu_partition_when_one_is_set():
    assert plan("cuda", gpu_partition="gpu").gpu_resources == {"gpu": 1, "slurm_partition": "gpu"}
    assert plan("cpu", gpu_partition="gpu").gpu_resources == {}  # CPU jobs stay on the default partition


def test_compute_settings_reach_the_training_job_without_being_recorded_as_params():
    """train.smk hands ``compute`` to the job as the typed ComputeConfig so that changing compute.compile or
    compute.resume_every reruns no finished job: Snakemake's rerun check compares only the params it can
    record, values of builtin types. If a Snakemake upgrade starts recording other objects, this fails."""
    from snakemake.persistence import UNREPRESENTABLE, PersistenceBase

    serialize = PersistenceBase._serialize_param_builtin  # the recording of one param value (self is unused)
    assert serialize(None, ComputeConfig(compile=True, resume_every=3)) is UNREPRESENTABLE
    assert serialize(None, {"compile": True}) is not UNREPRESENTABLE  # a plain dict would rerun every job
    rule = (REPO / "workflow/rules/train.smk").read_text()
    assert "compute=CFG.compute," in rule
    assert "snakemake.config" not in (REPO / "scripts/train_fold.py").read_text()
