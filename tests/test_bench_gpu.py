"""bench/bench_gpu.py runs its every step at toy sizes on the CPU (the GPU figures come from a GPU run,
docs/benchmarks.md); this checks that it does, and that its JSON holds what the docs read from it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from workflow_runner import REPO


@pytest.mark.slow
def test_the_gpu_benchmark_runs_tiny_on_the_cpu_and_writes_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    command = [sys.executable, str(REPO / "bench" / "bench_gpu.py"), "--tiny", "--device", "cpu", "--threads", "1",
               "--compile-backend", "eager", "--out", str(out), "--work", str(tmp_path / "work")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert [run["compiled"] for run in result["bench_step"]] == [False, True]
    assert all(run["images_per_s"] > 0 and run["first_step_s"] > 0 for run in result["bench_step"])
    eager, compiled = result["real_job"]
    assert (eager["compiled"], compiled["compiled"], compiled["compile_backend"]) == (False, True, "eager")
    for job in (eager, compiled):
        assert len(job["epoch_seconds"]) == job["epochs"] == 2
        assert job["steady_slices_per_s"] > 0 and 0 < job["whole_slices_per_s"]
        assert job["gpu_utilisation_percent"] is None  # no GPU to sample
    assert result["checkpoint"]["bytes"] > 0 and result["checkpoint"]["background_write_s"] > 0
    explained = result["explanations"]
    assert explained["maps"] == 4 * 28 and explained["job_maps_per_s"] > 0 and explained["maps_alone_per_s"] > 0
    assert explained["serial_job_maps_per_s"] > 0 and explained["same_regions"] is True  # overlap on and off agree
    regions = (tmp_path / "work" / "explain" / "regions.tsv").read_text().splitlines()
    assert len(regions) == 1 + 4 * 6  # the fold's four patients (all of them) x six regions


@pytest.mark.slow
def test_the_gpu_benchmark_measures_the_multiple_instance_job(tmp_path):
    out = tmp_path / "bench.json"
    command = [sys.executable, str(REPO / "bench" / "bench_gpu.py"), "--tiny", "--device", "cpu", "--threads", "1",
               "--compile-backend", "eager", "--steps", "job", "--objective", "mil", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-3000:]
    eager, compiled = json.loads(out.read_text())["real_job"]
    # tiny: 4 subjects per class, 1 validation and 1 test, so 2 training controls x 28 slices in steps of 16
    # control slices (4 steps, the last filled up), each step also 2 bags of 32 slices
    for job in (eager, compiled):
        assert job["objective"] == "mil" and job["train_slices_per_epoch"] == 4 * (16 + 2 * 32)
        assert job["steady_slices_per_s"] > 0
