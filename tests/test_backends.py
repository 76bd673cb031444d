"""The preprocessing backend table (headmri.backends) is the one dispatch: the config's choices are its
names, every backend's adapter script calls the function it names, and asking for another name is a
config error that lists the choices. (That the rules run its scripts in its envs: tests/test_envs.py.)"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from headmri.backends import BACKENDS, backend, load
from headmri.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_the_config_offers_exactly_the_backends_of_the_table():
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    preprocessing = schema["properties"]["preprocessing"]["properties"]
    for step, backends in BACKENDS.items():
        assert sorted(preprocessing[step]["enum"]) == sorted(backends), step
        assert preprocessing[step]["default"] in backends, step


def _called_imports(script: Path) -> set[tuple[str, str]]:
    """(module, name) of every ``from module import name`` whose name the script calls."""
    tree = ast.parse(script.read_text())
    imported = {alias.asname or alias.name: (node.module, alias.name) for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) for alias in node.names}
    called = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    return {imported[name] for name in called if name in imported}


@pytest.mark.parametrize("step,name", [(s, n) for s, names in BACKENDS.items() for n in names])
def test_each_backend_script_calls_the_function_the_table_names(step, name):
    chosen = backend(step, name)
    script = REPO / "scripts" / chosen.script
    assert script.is_file(), script
    assert (REPO / "envs" / chosen.env).is_file(), chosen.env
    module, function = chosen.function.split(":")
    assert (module, function) in _called_imports(script), f"{script.name} does not call {chosen.function}"
    assert callable(load(step, name))


def test_each_backend_has_its_own_script_so_fsl_jobs_never_import_torch():
    scripts = [b.script for backends in BACKENDS.values() for b in backends.values()]
    assert len(scripts) == len(set(scripts))


def test_an_unknown_backend_or_step_is_a_config_error_naming_the_choices():
    with pytest.raises(ConfigError, match=r"unknown registration backend 'spm'; choose one of \['embedded', 'fsl'\]"):
        backend("registration", "spm")
    with pytest.raises(ConfigError, match="unknown preprocessing step 'smoothing'"):
        load("smoothing", "embedded")
