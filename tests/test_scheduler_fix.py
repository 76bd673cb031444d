"""headmri.scheduler_fix: Snakemake's scheduler loop keeps one re-evaluation timer pending, so the number of
its passes follows the jobs, not (jobs finished) x (seconds jobs wait for a core)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from snakemake.scheduling.job_scheduler import JobScheduler

from headmri import scheduler_fix

REPO = Path(__file__).resolve().parent.parent

TOY = """
if config.get("fix"):
    from headmri import scheduler_fix
    assert scheduler_fix.install()

rule all:
    input: expand("out/{i}.txt", i=range(24))

rule one:
    output: "out/{i}.txt"
    shell: "sleep 0.4; touch {output}"
"""


class _Loop:
    """What the replaced method touches of a JobScheduler: the semaphore its loop waits on."""

    def __init__(self):
        self._open_jobs = threading.Semaphore(0)


def test_many_requests_leave_one_timer_that_wakes_the_loop_once():
    loop = _Loop()
    for _ in range(50):  # fifty passes of the loop, each asking to be woken again
        scheduler_fix.one_pending_reevaluation(loop, 0.2)
    assert not loop._open_jobs.acquire(blocking=False)  # nothing yet: the timer is pending
    assert loop._open_jobs.acquire(timeout=5)  # woken once ...
    time.sleep(0.4)
    assert not loop._open_jobs.acquire(blocking=False)  # ... and only once
    scheduler_fix.one_pending_reevaluation(loop, 0.05)  # the timer has fired: the next request starts a new one
    assert loop._open_jobs.acquire(timeout=5)


def test_install_replaces_the_method_of_the_pinned_snakemake():
    assert scheduler_fix.install()
    assert JobScheduler._schedule_reevalutation is scheduler_fix.one_pending_reevaluation


def _passes(folder: Path, fix: bool) -> tuple[int, float]:
    """Scheduler passes (debug lines 'Resources before job selection') of 24 jobs of 0.4 s on one core, and
    the run's seconds."""
    folder.mkdir()
    (folder / "Snakefile").write_text(TOY)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--verbose", "--scheduler", "greedy",
                           "--config", f"fix={int(fix)}"], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list((folder / "out").glob("*.txt"))) == 24
    return (done.stdout + done.stderr).count("Resources before job selection"), time.monotonic() - started


def test_the_scheduler_passes_follow_the_jobs_not_the_finished_jobs_times_the_wait(tmp_path):
    (fixed, seconds), (stock, _) = _passes(tmp_path / "fixed", True), _passes(tmp_path / "stock", False)
    # fixed: about one pass per finished job plus one a second while jobs wait (34 in 22 s on an idle 2-core
    # VM); stock: every finished job adds a timer chain that wakes the loop every second until the last job
    # has started (128 there)
    assert fixed <= 24 + 1.5 * seconds + 10, (fixed, seconds)
    assert stock > 2 * fixed, (stock, fixed)
