"""One pending re-evaluation timer in Snakemake's job scheduler, not one more per finished job.

Why (measured on the demo, docs/benchmarks.md, "The demo workflow"): Snakemake 9's scheduler loop
(``snakemake.scheduling.job_scheduler.JobScheduler.schedule``) waits on a semaphore that every finished job
releases once. With the job rate limiter, which is always on (``--max-jobs-per-timespan``, default 100/1s),
every pass of the loop that leaves jobs waiting ends by starting a ``threading.Timer`` that releases the
semaphore again after the timespan, and that release starts the next pass, which starts the next timer. So a
finished job's release never dies while other jobs wait for a core: after N finished jobs, N timer chains
wake the loop N times a second, and each pass selects among all ready jobs and stats all their input files.
On the 2-core demo (294 jobs, most of them waiting for a core) the main Snakemake process used 37 % of one
core on average (625 CPU s in 28 min) and more as the run went on; its competing for the cores slowed every
job. Snakemake 9.27.1, the newest release on 2026-12-02; the upstream code is unchanged there.

The fix keeps at most one such timer pending: the loop is still woken within the timespan when jobs wait
(what the timer is for) and at once by every finished job, as before; only the extra chains are gone.
Snakemake calls the method from its scheduler loop only (one thread). ``install()`` is called by the
Snakefile in the process that schedules (it does nothing where the scheduler has no such method, e.g. a
Snakemake whose scheduler was rewritten).
"""

from __future__ import annotations

import threading

_PENDING = "_headmri_pending_reevaluation"


def one_pending_reevaluation(scheduler, delay: float) -> None:
    """``JobScheduler._schedule_reevalutation`` (sic, Snakemake's spelling) with at most one timer pending.

    The timer marks itself gone *before* it wakes the loop, so the pass it starts can ask for the next one (a
    timer still alive while its pass runs would otherwise refuse it, and a loop held back only by the rate
    limiter would wait for the next finished job instead of one timespan)."""
    if getattr(scheduler, _PENDING, None) is not None:
        return  # the pending timer wakes the loop within the timespan anyway

    def wake() -> None:
        setattr(scheduler, _PENDING, None)
        scheduler._open_jobs.release()

    timer = threading.Timer(delay, wake)
    timer.daemon = True  # never keeps a finished run alive
    setattr(scheduler, _PENDING, timer)
    timer.start()


def install() -> bool:
    """Replace the scheduler's method in this process; True when it was there to replace."""
    try:
        from snakemake.scheduling.job_scheduler import JobScheduler
    except ImportError:
        return False
    if not hasattr(JobScheduler, "_schedule_reevalutation"):
        return False
    JobScheduler._schedule_reevalutation = one_pending_reevaluation
    return True
