"""Every rule's conda environment satisfies the imports of the script it runs, and agrees with pyproject.toml.

No conda client can be installed on the test machines, so `--use-conda` cannot run here; instead the
workflow is loaded through Snakemake's API (once per backend choice, since the FSL rules' environment
depends on it), every rule's script is read, its imports and those of the headmri modules it reaches
are collected (ast, transitively, imports inside functions included: a lazy `import ants` fails on the
cluster just the same), mapped to distributions with importlib.metadata, and looked up in the rule's
env file.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
ENVS = REPO / "envs"
# The driver's packages: they run Snakemake itself, not the jobs' scripts (scripts reach Snakemake
# through the search path Snakemake hands them).
DRIVER_ONLY = {"snakemake", "snakemake-executor-plugin-slurm"}
# Importable in every script job whatever its env: Snakemake puts its own search path there.
PROVIDED_TO_SCRIPTS = {"snakemake"}
BACKEND_CONFIGS = {  # the rules and envs that each backend choice brings in
    "embedded": {},
    "fsl+freesurfer": {
        "preprocessing": {
            "brain_extraction": "fsl",
            "registration": "fsl",
            "parcellation": "freesurfer",
            "freesurfer": {"license": "license.txt"},
        }
    },
}


@dataclass(frozen=True)
class RuleEnv:
    rule: str
    script: Path | None
    has_shell: bool
    conda: Path | None
    container: str | None


# --- reading the workflow ---------------------------------------------------------------------------


def load_rules(config: dict, results_dir: Path) -> list[RuleEnv]:
    """The workflow's rules as Snakemake itself parses them for this config."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    rules = []
    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(cores=2),
            config_settings=ConfigSettings(config={**config, "results_dir": str(results_dir)}),
            snakefile=REPO / "Snakefile",
            workdir=REPO,
        )._workflow
        for rule in workflow.rules:
            rule_dir = Path(rule.snakefile).parent
            conda = rule.conda_env
            container = getattr(rule, "container_img", None)
            rules.append(
                RuleEnv(
                    rule=rule.name,
                    script=(rule_dir / rule.script).resolve() if rule.script else None,
                    has_shell=bool(rule.shellcmd),
                    conda=(rule_dir / str(conda)).resolve() if conda and not callable(conda) else None,
                    container=str(container) if container and not callable(container) else None,
                )
            )
    return rules


@pytest.fixture(scope="module")
def rules_by_backend(tmp_path_factory) -> dict[str, list[RuleEnv]]:
    return {
        name: load_rules(config, tmp_path_factory.mktemp(f"results-{name}"))
        for name, config in BACKEND_CONFIGS.items()
    }


# --- imports ----------------------------------------------------------------------------------------


def _imports_of(path: Path, package: str | None) -> set[str]:
    """Absolute module names imported anywhere in a file (relative imports resolved against package)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = set()
    for node in ast.walk(tree):  # `if TYPE_CHECKING:` blocks never run
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    names = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = (package or "").split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            # `from headmri import labels` imports the submodule headmri.labels
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _headmri_file(module: str) -> tuple[Path, str] | None:
    """(file, package) of a headmri module, or None if the dotted name is not a module."""
    parts = module.split(".")
    as_package = REPO.joinpath(*parts, "__init__.py")
    if as_package.is_file():
        return as_package, module
    as_module = REPO.joinpath(*parts[:-1], parts[-1] + ".py")
    if as_module.is_file():
        return as_module, ".".join(parts[:-1])
    return None


def external_imports(script: Path) -> dict[str, str]:
    """Top-level names of the non-headmri modules a script needs -> where the first such import is."""
    found: dict[str, str] = {}
    seen: set[str] = set()
    queue = [(script, None, script.relative_to(REPO).as_posix())]
    while queue:
        path, package, where = queue.pop()
        for name in sorted(_imports_of(path, package)):
            top = name.split(".")[0]
            if top != "headmri":
                if name.count(".") == 0 or top not in found:
                    found.setdefault(top, where)
                continue
            # importing headmri.a.b runs headmri/__init__.py and headmri/a/__init__.py too
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                module = ".".join(parts[:i])
                target = _headmri_file(module)
                if target and module not in seen:
                    seen.add(module)
                    queue.append((*target, target[0].relative_to(REPO).as_posix()))
    return {top: where for top, where in found.items() if top and top not in sys.stdlib_module_names}


@cache
def _import_to_distributions() -> dict[str, list[str]]:
    return md.packages_distributions()  # scans every installed distribution: once


def distributions_of_import(top: str) -> frozenset[str]:
    return frozenset(canonicalize_name(d) for d in _import_to_distributions().get(top, []))


# --- env files --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvFile:
    conda: dict[str, str]  # conda package -> version ("" when unpinned)
    pip: dict[str, str]  # canonical distribution -> version ("" when unpinned)


PIN = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(?:==?\s*([^\s#]+))?")


@cache
def read_env(path: Path) -> EnvFile:
    spec = yaml.safe_load(path.read_text())
    conda, pip = {}, {}
    for dep in spec["dependencies"]:
        if isinstance(dep, dict):
            for line in dep.get("pip", []):
                name, version = PIN.match(line).groups()
                pip[canonicalize_name(name)] = version or ""
        else:
            name, version = PIN.match(dep).groups()
            conda[name] = version or ""
    # packages the env's post-deploy script installs with pip
    post_deploy = path.with_name(path.name.removesuffix(".yaml") + ".post-deploy.sh")
    if post_deploy.is_file():
        for name, version in re.findall(r"pip install [^\n]*?([A-Za-z0-9_.\-]+)==([^\s]+)", post_deploy.read_text()):
            pip[canonicalize_name(name)] = version
    return EnvFile(conda, pip)


def pyproject_requirements() -> dict[str, Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    return {canonicalize_name(r.name): r for r in reqs}


def env_files() -> list[Path]:
    return sorted(ENVS.glob("*.yaml"))


# --- tests ------------------------------------------------------------------------------------------


def test_import_scanner_finds_lazy_and_transitive_imports(tmp_path):
    """The scanner itself: a lazy import inside a function and one reached through headmri count."""
    script = REPO / "scripts" / "_scanner_probe.py"
    try:
        script.write_text(
            "import json\nfrom headmri.errors import InputError\n"
            "def f():\n    import nibabel as nib\n    return nib\n"
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n"
        )
        found = external_imports(script)
    finally:
        script.unlink()
    assert "nibabel" in found and "json" not in found
    assert "torch" not in found, "imports under TYPE_CHECKING never run"
    assert distributions_of_import("yaml") == {"pyyaml"}


@pytest.mark.slow
def test_every_rule_that_runs_something_has_a_pinned_environment(rules_by_backend):
    missing = []
    for backend, rules in rules_by_backend.items():
        for r in rules:
            if (r.script or r.has_shell) and not (r.conda or r.container):
                missing.append(f"{r.rule} ({backend} backend)")
            if r.conda:
                assert r.conda.is_file(), f"rule {r.rule}: conda env {r.conda} does not exist"
            if r.container:
                tag = r.container.rsplit("/", 1)[-1]
                assert ":" in tag and not tag.endswith(":latest"), f"rule {r.rule}: container {r.container} is not pinned"
    assert not missing, f"rules without conda: or container: {missing}"


@pytest.mark.slow
def test_each_preprocessing_rule_runs_the_script_and_env_of_the_backend_table(rules_by_backend):
    from headmri.backends import backend

    rule_of_step = {"brain_extraction": "brain_extraction", "registration": "register_to_mni",
                    "parcellation": "parcellate"}
    for name, rules in rules_by_backend.items():
        chosen_names = BACKEND_CONFIGS[name].get("preprocessing", {})
        by_rule = {r.rule: r for r in rules}
        for step, rule in rule_of_step.items():
            chosen = backend(step, chosen_names.get(step, "embedded"))
            assert by_rule[rule].script == (REPO / "scripts" / chosen.script).resolve(), (name, rule)
            assert by_rule[rule].conda == (ENVS / chosen.env).resolve(), (name, rule)


def test_every_env_pins_every_package():
    for path in env_files():
        env = read_env(path)
        unpinned = [n for n, v in {**env.conda, **env.pip}.items() if not v]
        assert not unpinned, f"{path.name}: unpinned {unpinned}"


@pytest.mark.slow
def test_script_imports_are_satisfied_by_the_rule_env(rules_by_backend):
    problems = []
    checked = 0
    for backend, rules in rules_by_backend.items():
        for r in rules:
            if not (r.script and r.conda) or r.script.suffix != ".py":
                continue
            env = read_env(r.conda)
            for top, where in sorted(external_imports(r.script).items()):
                if top in PROVIDED_TO_SCRIPTS:
                    continue
                dists = distributions_of_import(top)
                checked += 1
                if not dists:
                    problems.append(f"{r.rule}: `import {top}` ({where}) is no installed distribution")
                elif not dists & env.pip.keys():
                    problems.append(
                        f"{r.rule} ({backend}): `import {top}` ({where}) needs {sorted(dists)}, "
                        f"not in {r.conda.name}"
                    )
    assert checked, "no rule script was checked: the workflow has no script rules?"
    assert not problems, "\n".join(sorted(set(problems)))


def test_env_pins_agree_with_pyproject():
    reqs = pyproject_requirements()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for path in env_files():
        env = read_env(path)
        python = env.conda.get("python")
        assert python and SpecifierSet(project["requires-python"]).contains(python), path.name
        for name, version in env.pip.items():
            if name in reqs:
                assert reqs[name].specifier.contains(version, prereleases=True), (
                    f"{path.name} pins {name}=={version}; pyproject.toml asks {reqs[name]}"
                )
    main = read_env(ENVS / "headmri.yaml")
    absent = sorted(set(reqs) - DRIVER_ONLY - main.pip.keys())
    assert not absent, f"pyproject.toml dependencies missing from envs/headmri.yaml: {absent}"


def test_env_pins_are_the_versions_the_tests_run():
    """Where pyproject.toml only gives a range, the env pins the version installed here."""
    for path in env_files():
        for name, version in read_env(path).pip.items():
            try:
                installed = md.version(name)
            except md.PackageNotFoundError:
                pytest.fail(f"{path.name} pins {name}=={version}, which is not installed here")
            assert installed == version, f"{path.name} pins {name}=={version}; the tests run {installed}"


def test_nimare_pin_matches_the_makefile():
    makefile = (REPO / "Makefile").read_text()
    pinned = re.search(r"nimare==([^\s]+)", makefile)
    assert pinned, "the Makefile no longer installs nimare"
    assert read_env(ENVS / "headmri.yaml").pip["nimare"] == pinned.group(1)
