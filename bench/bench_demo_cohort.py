"""Benchmark: demo cohort generation (seconds per subject, CPU seconds per subject, peak memory) and the
embedded atlas build, at the default native grid (1 x 1 x 1.25 mm, LIA).

    python bench/bench_demo_cohort.py --subjects 4 --threads 1

The atlas is built first (in memory, as the generator does without --atlas) and timed on its own, then
the template and atlas are loaded (as every workflow subject job does, from the atlas file there), so the
cohort's time is the subjects' own. Wall time depends on what else runs on the machine; CPU seconds show
the work itself.
"""

from __future__ import annotations

import argparse
import logging
import platform
import resource
import tempfile
import time
from pathlib import Path

from headmri.demo.cli import DEFAULT_EFFECTS
from headmri.demo.cohort import load_anatomy, make_demo_cohort
from headmri.demo.effects import read_effects
from headmri.parcellation import embedded_atlas_labels
from headmri.templates import embedded_template


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=4, help="subjects, half controls and half migraine")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # one line per subject with its seconds

    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, python {platform.python_version()}")
    template = embedded_template()
    start, cpu = time.perf_counter(), cpu_seconds()
    embedded_atlas_labels(template.head, template.brain_mask)
    print(f"embedded atlas build: {time.perf_counter() - start:.1f} s wall, {cpu_seconds() - cpu:.1f} s CPU")
    start, cpu = time.perf_counter(), cpu_seconds()
    load_anatomy()  # cached for the cohort below
    print(f"template and atlas loading: {time.perf_counter() - start:.1f} s wall, {cpu_seconds() - cpu:.1f} s CPU")

    sizes = {"HC": args.subjects // 2, "migraine": args.subjects - args.subjects // 2}
    with tempfile.TemporaryDirectory() as tmp:
        start, cpu = time.perf_counter(), cpu_seconds()
        make_demo_cohort(
            Path(tmp) / "bids", group_sizes=sizes, seed=1, effects=read_effects(DEFAULT_EFFECTS), threads=args.threads
        )
        wall, used = time.perf_counter() - start, cpu_seconds() - cpu
    peak_mb = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    ) / 1024
    n = args.subjects
    print(f"cohort of {n} subjects with {args.threads} thread(s): {wall:.1f} s wall ({wall / n:.1f} s per subject), "
          f"{used / n:.1f} CPU s per subject")
    print(f"per subject and worker: {wall * min(args.threads, n) / n:.1f} s wall (synthesis + writing, excluding "
          "template loading; each subject's own time is logged above)")
    print(f"peak resident memory of one process: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
