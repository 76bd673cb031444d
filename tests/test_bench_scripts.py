"""Every benchmark script still loads: what it imports from headmri (and from its sibling scripts) exists,
so a benchmark that docs/benchmarks.md cites can be rerun after the code it measures was refactored. Only
bench_gpu.py also runs (tests/test_bench_gpu.py); the others need a kept run or minutes of work."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from workflow_runner import REPO

SCRIPTS = sorted((REPO / "bench").glob("bench_*.py"))


def test_the_benchmark_folder_is_found():
    assert len(SCRIPTS) >= 10, SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.stem)
def test_a_benchmark_script_loads_and_has_a_main(script, monkeypatch):
    monkeypatch.syspath_prepend(str(script.parent))  # the scripts import each other, as when run from bench/
    spec = importlib.util.spec_from_file_location(f"_bench_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)  # runs the imports and definitions, not main()
    assert callable(getattr(module, "main", None)), f"{script.name} has no main()"
