"""Every benchmark script still loads: what it imports from headmri (and from its sibling scripts) exists,
so a benchmark that docs/benchmarks.md cites can be rerun after the code it measures was refactored. Only
bench_gpu.py also runs (tests/test_bench_gpu.py); the others need a kept run or minutes of work."""

from __future__ import annotations

import pytest

from bench_loader import BENCH, bench_script

SCRIPTS = sorted(BENCH.glob("bench_*.py"))


def test_the_benchmark_folder_is_found():
    assert len(SCRIPTS) >= 10, SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.stem)
def test_a_benchmark_script_loads_and_has_a_main(script):
    with bench_script(script.stem) as module:  # runs the imports and definitions, not main()
        assert callable(getattr(module, "main", None)), f"{script.name} has no main()"
