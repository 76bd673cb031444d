"""Where the training and explanation jobs run: the device, the threads of each job, and what a job
claims from Snakemake's scheduler (config section ``compute``; docs/cluster.md).

The device is decided once, when Snakemake plans the run: ``cpu``, ``cuda``, or ``auto`` (``cuda`` when
torch sees a GPU on the machine that runs Snakemake). Only a job on ``cuda`` claims the ``gpu``
resource, so on a CPU-only machine ``--cores N`` runs N / threads training jobs side by side, while
on a workstation with one GPU (``profiles/default``: ``resources: gpu=1``) GPU jobs take turns. On a
cluster Snakemake runs on a login node, which usually has no GPU: cluster users set ``cuda``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from headmri.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")
# CPU threads of one job when ``compute.threads_per_job`` is null. On the CPU one thread per job: jobs
# side by side use cores better than threads inside one job, and the result never depends on --cores
# (Snakemake lowers a rule's threads to --cores). On a GPU the threads feed the GPU with batches, and
# GPU jobs run one at a time anyway.
DEFAULT_THREADS = {"cpu": 1, "cuda": 8}
# The device the main Snakemake process decided on, handed to the Snakemake processes that run jobs on
# cluster nodes (they read the workflow again, and ``auto`` must not be decided again on a node).
RESOLVED_DEVICE_ENV = "HEADMRI_RESOLVED_DEVICE"
# Without one of these no torch build can see a GPU (NVIDIA's driver, AMD's ROCm driver, WSL's GPU
# bridge): `auto` is then `cpu` without importing torch, which costs seconds on every Snakemake start.
GPU_DRIVER_PATHS = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/kfd", "/dev/dxg")


def resolve_device(setting: str) -> str:
    """``cpu`` or ``cuda`` for a ``compute.device`` setting; ``auto`` asks torch on this machine."""
    if setting in ("cpu", "cuda"):
        return setting
    if setting != "auto":
        raise ConfigError(f"compute.device must be one of {list(DEVICES)}, got {setting!r}")
    if not any(os.path.exists(path) for path in GPU_DRIVER_PATHS):
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class JobCompute:
    """What every training and explanation job of a run uses: ``device`` (``cpu`` | ``cuda``), ``threads``,
    and ``gpu_partition``: the SLURM partition its cuda jobs are submitted to (None: the default one)."""

    device: str
    threads: int
    setting: str = "auto"
    gpu_partition: str | None = None

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda"):
            raise ConfigError(f"a job runs on cpu or cuda, not {self.device!r}")
        if int(self.threads) < 1:
            raise ConfigError(f"compute.threads_per_job must be at least 1, got {self.threads}")

    @property
    def gpu_resources(self) -> dict[str, int | str]:
        """The ``resources:`` a job adds: ``gpu=1`` on cuda (and ``slurm_partition`` when a GPU partition is
        set; the SLURM executor submits there, a local run ignores it), nothing on the CPU."""
        if self.device != "cuda":
            return {}
        return {"gpu": 1, **({"slurm_partition": self.gpu_partition} if self.gpu_partition else {})}

    def summary(self, *, cores: int | None, jobs: int | None = None, gpu_limit: int | None = None) -> str:
        """One line for the Snakemake run's log: device, threads and how many jobs run at once.

        ``cores``: ``--cores`` (None when not given); ``jobs``: ``--jobs`` of a cluster executor (None
        for local runs); ``gpu_limit``: the global ``gpu`` resource (``--resources gpu=1``), if any.
        """
        decided = f" (compute.device: {self.setting})" if self.setting != self.device else ""
        head = (f"training and explanation jobs: device {self.device}{decided}, "
                f"{self.threads} thread{'s' if self.threads != 1 else ''} per job")
        if jobs is not None:
            gpu = " and a GPU" if self.device == "cuda" else ""
            line = (f"{head}; each is a cluster job asking for {self.threads} CPU{'s' if self.threads != 1 else ''}"
                    f"{gpu}, up to {jobs} jobs at once (--jobs)")
            if self.setting == "auto":  # decided on the login node, which says nothing about the compute nodes
                line += "; compute.device auto looked for a GPU on this machine: set compute.device cuda or cpu"
            return line
        if cores is None:
            return f"{head}; --cores N runs up to N // {self.threads} of them side by side"
        side_by_side = max(1, int(cores) // self.threads)
        if self.device == "cuda" and gpu_limit is not None:
            side_by_side = min(side_by_side, int(gpu_limit))
            return f"{head}; up to {side_by_side} at once (--cores {cores}, --resources gpu={gpu_limit})"
        return f"{head}; up to {side_by_side} side by side at --cores {cores}"


def plan(device: str = "auto", threads_per_job: int | None = None, *, inherited: str | None = None,
         gpu_partition: str | None = None) -> JobCompute:
    """The run's ``JobCompute`` from the ``compute`` section. ``inherited``: the device a parent
    Snakemake process already decided (cluster jobs), used instead of deciding ``auto`` again."""
    resolved = inherited if device == "auto" and inherited in ("cpu", "cuda") else resolve_device(device)
    threads = threads_per_job if threads_per_job is not None else DEFAULT_THREADS[resolved]
    return JobCompute(device=resolved, threads=int(threads), setting=device, gpu_partition=gpu_partition)


def job_device(claimed_gpus: int, *, cuda_available: bool | None = None) -> tuple[str, str | None]:
    """Inside a job: the torch device to use, and a warning when a GPU was claimed but torch sees none.

    The job follows what its rule claimed (``resources: gpu``), not what it happens to see: a job that
    claimed no GPU stays on the CPU even on a machine with one (another job may hold it).
    """
    if not claimed_gpus:
        return "cpu", None
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    if cuda_available:
        return "cuda", None
    return "cpu", ("the job claimed a GPU (compute.device) but torch sees none "
                   f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); running on the CPU")
