"""Load a ``bench/`` script as a module in a test, as when it runs from bench/: its sibling scripts importable,
its definitions executed, ``main()`` not called; sys.path and sys.modules restored afterwards."""

from __future__ import annotations

import importlib.util
import sys
from contextlib import contextmanager
from types import ModuleType
from typing import Iterator

from workflow_runner import REPO

BENCH = REPO / "bench"


@contextmanager
def bench_script(stem: str) -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location(f"_bench_{stem}", BENCH / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(BENCH))
    sys.modules[spec.name] = module  # dataclasses and pickling look their module up by name
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]
        sys.path.remove(str(BENCH))
