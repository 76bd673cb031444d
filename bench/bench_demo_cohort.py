"""Benchmark: demo cohort generation (seconds per subject, CPU seconds per subject, peak memory) and the
embedded atlas build, at the default native grid (1 x 1 x 1.25 mm, LIA).

    python bench/bench_demo_cohort.py --subjects 4 --threads 1

The atlas is built first (in memory, as the generator does without --atlas) and timed on its own. Wall
time depends on what else runs on the machine; CPU seconds show the work itself.
"""

from __future__ import annotations

import argparse
import platform
import resource
import tempfile
import time
from pathlib import Path

import pandas as pd

from headmri.demo.cli import DEFAULT_EFFECTS
from headmri.demo.cohort import make_demo_cohort
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

    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, python {platform.python_version()}")
    template = embedded_template()
    start, cpu = time.perf_counter(), cpu_seconds()
    embedded_atlas_labels(template.head, template.brain_mask)
    print(f"embedded atlas build: {time.perf_counter() - start:.1f} s wall, {cpu_seconds() - cpu:.1f} s CPU")

    sizes = {"HC": args.subjects // 2, "migraine": args.subjects - args.subjects // 2}
    with tempfile.TemporaryDirectory() as tmp:
        start, cpu = time.perf_counter(), cpu_seconds()
        make_demo_cohort(
            Path(tmp) / "bids", group_sizes=sizes, seed=1, effects=read_effects(DEFAULT_EFFECTS), threads=args.threads
        )
        wall, used = time.perf_counter() - start, cpu_seconds() - cpu
        per_subject = pd.read_csv(Path(tmp) / "bids" / "derivatives" / "truth" / "parameters.tsv", sep="\t")["seconds"]
    peak_mb = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    ) / 1024
    n = args.subjects
    print(f"cohort of {n} subjects with {args.threads} thread(s): {wall:.1f} s wall ({wall / n:.1f} s per subject), "
          f"{used / n:.1f} CPU s per subject")
    print(f"per-subject job time: median {per_subject.median():.1f} s, max {per_subject.max():.1f} s "
          "(synthesis + writing, excluding template loading)")
    print(f"peak resident memory of one process: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
