"""Benchmark: the main Snakemake process's passes and CPU with and without ``headmri.scheduler_fix``.

A toy workflow of ``--jobs`` independent jobs, each sleeping ``--seconds`` (no CPU work of its own), on
``--cores`` cores, so that most jobs wait for a core, as the demo's preprocessing does on 2 cores. It is run
twice: with the fix installed (as workflow/rules/common.smk does) and with Snakemake as shipped. Reported per
run: the scheduler passes (Snakemake's debug line 'Resources before job selection', one per pass), wall seconds,
and the CPU seconds of the Snakemake process and its jobs (the jobs only sleep and touch a file: the rest is
Snakemake's start and its scheduling).

    python bench/bench_scheduler.py --jobs 100 --seconds 1 --cores 2 [--json out.json]

tests/test_scheduler_fix.py runs it at 24 jobs of 0.4 s on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

TOY = """
if config.get("fix"):
    from headmri import scheduler_fix
    assert scheduler_fix.install()

rule all:
    input: expand("out/{i}.txt", i=range(int(config["jobs"])))

rule one:
    output: "out/{i}.txt"
    shell: "sleep %s; touch {output}"
"""


def run_toy(folder: Path, *, fix: bool, jobs: int, seconds: float, cores: int) -> dict:
    """One run of the toy workflow in ``folder`` (created): passes, wall and CPU seconds."""
    folder.mkdir(parents=True)
    (folder / "Snakefile").write_text(TOY % seconds)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(cores), "--verbose", "--scheduler",
                           "greedy", "--config", f"fix={int(fix)}", f"jobs={jobs}"],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"the toy workflow failed:\n{done.stderr[-3000:]}")
    written = len(list((folder / "out").glob("*.txt")))
    if written != jobs:
        raise RuntimeError(f"the toy workflow wrote {written} of {jobs} files")
    return {"fix": fix, "jobs": jobs, "seconds_per_job": seconds, "cores": cores,
            "passes": (done.stdout + done.stderr).count("Resources before job selection"),
            "wall_s": round(wall, 2),
            "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=1.0, help="each job's sleep")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this file")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_scheduler.") as work:
        for fix in (True, False):
            row = run_toy(Path(work) / ("fixed" if fix else "stock"), fix=fix, jobs=args.jobs, seconds=args.seconds,
                          cores=args.cores)
            row.update(date=date.today().isoformat(), machine=f"{platform.node()} ({platform.machine()})")
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
