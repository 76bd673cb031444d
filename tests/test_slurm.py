"""The slurm profile against a real single-node SLURM (tools/slurm/start_cluster.sh, Debian's packages):
preprocessing of demo subjects (grouped jobs) and a training job (a GPU request) go through the slurm
executor, and SLURM's own accounting (sacct) records them as completed with the rules' names."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from datetime import datetime

import pytest

from workflow_runner import (
    REPO,
    TRAIN_TARGET,
    copy_workdir,
    dry_run,
    preprocessed_workdir,
    snakemake_command,
)

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

START = REPO / "tools" / "slurm" / "start_cluster.sh"
STOP = REPO / "tools" / "slurm" / "stop_cluster.sh"
# exit codes of start_cluster.sh that mean "this machine cannot run it", not "it is broken"
CANNOT_START = {2: "not root, or a real cluster's configuration is present", 3: "SLURM could not be installed"}


def _cannot(reason: str):
    """Skip where SLURM cannot be had; in CI the test must run, so there it fails instead."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the SLURM test, but {reason}")
    pytest.skip(reason)


def _cluster_answers() -> bool:
    ping = shutil.which("scontrol") and subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    return bool(ping) and ping.returncode == 0 and "UP" in ping.stdout


@pytest.fixture(scope="session")
def slurm_cluster():
    if os.geteuid() != 0:
        _cannot("starting a SLURM cluster needs root (daemons, /etc/slurm); run the tests as root")
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        _cannot("SLURM is not installed and apt-get is not available to install it")
    already_up = _cluster_answers()
    started = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=900)
    if started.returncode in CANNOT_START:
        _cannot(f"{CANNOT_START[started.returncode]}: {started.stderr.strip()}")
    assert started.returncode == 0, f"start_cluster.sh failed:\n{started.stdout}\n{started.stderr}"
    yield
    if not already_up:  # leave a cluster someone else started alone
        subprocess.run(["bash", str(STOP)], capture_output=True, text=True, timeout=120)


def sacct_jobs(run_id: str, since: str) -> list[dict[str, str]]:
    fields = ["JobID", "JobName", "Comment", "State", "AllocTRES", "ExitCode", "Account"]
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-S", since, "--name", run_id, "-o", ",".join(f + "%200" for f in fields)],
        capture_output=True, text=True, check=True,
    ).stdout
    return [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line.strip()]


def test_preprocessing_and_training_run_as_slurm_jobs(slurm_cluster, tmp_path):
    # Two subjects (one per class) are preprocessed on SLURM; the other four come from the shared
    # local run, so the training job of fold 1 has the six subjects its split needs.
    wd = copy_workdir(preprocessed_workdir(), tmp_path / "wd")
    fresh = ["hc001", "migraine001"]
    for label in fresh:
        for path in sorted((wd / "results").rglob(f"*sub-{label}*"), key=lambda p: len(p.parts)):
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    planned = dry_run(wd, wd / "config.yaml", "preprocess_all", TRAIN_TARGET)
    assert {j.subject for j in planned if j.subject} == set(fresh)

    since = datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    time.sleep(1)
    # as docs/cluster.md has users do: the cluster profile in place of the workstation's profiles/default,
    # and compute.device cuda for GPU nodes (the machine that plans the run has no GPU)
    cmd = snakemake_command(wd, wd / "config.yaml", "--executor", "slurm", "--default-resources",
                            "slurm_account=headmri", "runtime=15", "mem_mb=2000",
                            "--config", "compute={device: cuda}", "--", "preprocess_all",
                            TRAIN_TARGET, profile="slurm-test")
    run = subprocess.run(["timeout", "-k", "10", "900", *cmd], cwd=wd, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert run.returncode == 0, run.stdout[-8000:]
    run_id = re.search(r"SLURM run ID: (\S+)", run.stdout).group(1)

    jobs = sacct_jobs(run_id, since)
    assert jobs, f"sacct has no job named {run_id}"
    assert all(j["State"] == "COMPLETED" and j["ExitCode"] == "0:0" for j in jobs), jobs
    comments = [j["Comment"] for j in jobs]
    # per-subject preprocessing went as group jobs (rule names of the group in the comment)
    grouped = [c for c in comments if "preprocess" in c and "make_slices" in c]
    assert grouped, comments
    training = [j for j in jobs if j["Comment"].startswith("rule_train_fold")]
    assert [j["Comment"] for j in training] == ["rule_train_fold_wildcards_T1w_migraine_vittinydemo_1"]
    assert {j["Account"] for j in jobs} == {"headmri"}, "the account given on the command line"
    assert "gres/gpu=1" in training[0]["AllocTRES"], "compute.device cuda: the rule's gpu=1 became a SLURM GPU request"
    assert "training and explanation jobs: device cuda" in run.stdout
    assert (wd / TRAIN_TARGET).is_file()
    assert dry_run(wd, wd / "config.yaml", "preprocess_all", TRAIN_TARGET) == []
