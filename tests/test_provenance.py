"""Provenance: the resolved config, git state, package and tool versions, as the workflow writes them."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from headmri import provenance, tool_versions

from workflow_runner import dry_run, run_snakemake, write_config

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True,
                          env=env).stdout.strip()


@pytest.fixture
def code_repo(tmp_path) -> Path:
    """A small git work tree with a pyproject.toml that names two real and one absent distribution."""
    repo = tmp_path / "code"
    repo.mkdir()
    (repo / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = ["numpy>=1.26", "PyYAML>=6", "surely-not-installed-dist==1.0"]\n'
    )
    _git(repo, "init", "-q")
    _git(repo, "add", "pyproject.toml")
    _git(repo, "commit", "-q", "-m", "init")
    return repo


def test_write_provenance_records_config_git_packages_and_tools(tmp_path, code_repo, monkeypatch):
    monkeypatch.setenv("PATH", f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")  # the pip dcm2niix binary
    config = {"results_dir": "results", "subjects": ["hc001"], "splits": {"folds": 3, "seed": 13}}
    config_path, env_path = provenance.write_provenance(
        tmp_path / "prov", config=config, repo_dir=code_repo, tools=("dcm2niix", "surely-not-a-tool")
    )
    assert yaml.safe_load(config_path.read_text()) == config
    env = json.loads(env_path.read_text())
    assert env["git"] == {"commit": _git(code_repo, "rev-parse", "HEAD"), "dirty": False, "changed_files": []}
    assert env["packages"]["numpy"] == md.version("numpy")
    assert env["packages"]["PyYAML"] == md.version("PyYAML")
    assert env["packages"]["surely-not-installed-dist"] is None
    assert env["platform"]["python"] == sys.version.split()[0]
    import torch

    assert env["torch"]["version"] == torch.__version__
    assert env["torch"]["cuda_available"] == torch.cuda.is_available()
    # the real dcm2niix prints its version and exits non-zero: the version is kept all the same
    assert md.version("dcm2niix").split(".")[-1] in env["tools"]["dcm2niix"]
    assert env["tools"]["surely-not-a-tool"] is None
    assert not list((tmp_path / "prov").glob(".*tmp*")), "no temporary file left behind"


def test_git_state_flags_uncommitted_changes_and_no_repository(tmp_path, code_repo):
    (code_repo / "pyproject.toml").write_text((code_repo / "pyproject.toml").read_text() + "\n# edited\n")
    state = provenance.git_state(code_repo)
    assert state["dirty"] is True
    assert state["changed_files"] == [" M pyproject.toml"]
    plain = tmp_path / "plain"
    plain.mkdir()
    assert provenance.git_state(plain) is None


def test_the_project_dependencies_are_what_pyproject_lists():
    names = provenance.dependency_names(REPO / "pyproject.toml")
    assert {"torch", "nibabel", "snakemake", "open-clip-torch"} <= set(names)
    assert all(not any(c in n for c in "<>=[ ") for n in names)


def test_conda_packages_are_read_from_conda_meta_records(tmp_path):
    meta = tmp_path / "env" / "conda-meta"
    meta.mkdir(parents=True)
    for name, version in [("fsl-flirt", "2111.4"), ("fsl-bet2", "2111.8"), ("python", "3.11.7")]:
        (meta / f"{name}-{version}-h0_0.json").write_text(json.dumps({"name": name, "version": version}))
    assert tool_versions.conda_packages(tmp_path / "env", "fsl-") == {"fsl-bet2": "2111.8", "fsl-flirt": "2111.4"}
    assert tool_versions.conda_packages(None) == {}


def test_tool_versions_record_fsl_release_and_missing_tools(tmp_path, monkeypatch):
    fsldir = tmp_path / "fsl"
    (fsldir / "etc").mkdir(parents=True)
    (fsldir / "etc" / "fslversion").write_text("6.0.7.16\n")
    monkeypatch.setenv("PATH", f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    out = tool_versions.write_tool_versions(
        tmp_path / "tools.json", tools=["dcm2niix", "surely-not-a-tool"], fsldir=str(fsldir), container="docker://x:1"
    )
    record = json.loads(out.read_text())
    assert record["fsl_release"] == "6.0.7.16"
    assert record["tools"]["surely-not-a-tool"] is None
    assert "v1.0" in record["tools"]["dcm2niix"]
    assert record["container"] == "docker://x:1"


@pytest.mark.skipif(shutil.which("flirt") is None, reason="FSL's flirt is not on PATH")
def test_flirt_reports_its_version():
    assert "FLIRT" in tool_versions.tool_version("flirt")


@pytest.mark.slow
def test_workflow_writes_provenance_and_a_config_change_reruns_it(tmp_path):
    """The provenance rule through Snakemake: the resolved config (schema defaults included) lands in
    results/provenance/, a second run has nothing to do, a changed config reruns it."""
    configfile = write_config(tmp_path / "config.yaml", splits={"folds": 2})
    run_snakemake(tmp_path, configfile, "--cores", "1", "provenance")
    prov = tmp_path / "results" / "provenance"
    config = yaml.safe_load((prov / "config.yaml").read_text())
    assert config["splits"]["folds"] == 2
    assert config["slices"]["percentiles"] == [0.5, 99.5], "schema defaults and config values are resolved"
    env = json.loads((prov / "environment.json").read_text())
    # HEAD itself, or an ancestor where others commit while the test runs
    _git(REPO, "merge-base", "--is-ancestor", env["git"]["commit"], "HEAD")

    assert dry_run(tmp_path, configfile, "provenance") == []
    rerun = dry_run(tmp_path, configfile, "--config", "subjects=hc001", "--", "provenance")
    assert [(j.rule, "params" in j.reason.lower()) for j in rerun] == [("provenance", True)]
