"""Provenance of a run: the resolved configuration, the code's git state, the package and tool versions.

Written under ``results/provenance/`` by the ``provenance`` rules, so that every result can be traced
to the settings and software that made it. Each environment reports on itself: the main environment
its Python packages and torch/CUDA, the FSL environment its FSL tools, the FreeSurfer container its
recon-all.
"""

from __future__ import annotations

import importlib.metadata as md
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tomllib
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping, Sequence

import yaml

from headmri.atomic import write_json, write_text
from headmri.tool_versions import tool_version

log = logging.getLogger(__name__)

# Distributions reported besides pyproject.toml's dependencies (installed without dependencies).
EXTRA_DISTRIBUTIONS = ("nimare",)


def git_state(repo_dir: str | os.PathLike) -> dict[str, object] | None:
    """Commit and dirty flag of the code, or None when repo_dir is no git work tree (or git is absent)."""
    if shutil.which("git") is None:
        return None

    def git(*args: str) -> str:
        # --no-optional-locks: a status query must not take index.lock from people committing.
        return subprocess.run(
            ["git", "--no-optional-locks", "-C", str(repo_dir), *args],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout.rstrip("\n")  # not strip(): porcelain lines start with a significant space

    try:
        commit = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
        return None
    return {"commit": commit, "dirty": bool(changed), "changed_files": changed.splitlines()}


def dependency_names(pyproject: str | os.PathLike) -> list[str]:
    """Distribution names of the project's dependencies, as pyproject.toml lists them."""
    project = tomllib.loads(Path(pyproject).read_text())["project"]
    return [re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0] for req in project.get("dependencies", [])]


def package_versions(names: Sequence[str]) -> dict[str, str | None]:
    """Installed version of each distribution (None where it is not installed in this environment)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    return versions


def torch_state() -> dict[str, object]:
    """torch's version, the CUDA/cuDNN it was built with, and the GPUs it sees."""
    try:
        import torch
    except ImportError:
        return {"installed": False}
    cuda = torch.cuda.is_available()
    return {
        "installed": True,
        "version": torch.__version__,
        "cuda_build": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "cuda_available": cuda,
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
    }


def platform_state() -> dict[str, object]:
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "executable": sys.executable,
    }


def write_provenance(
    out_dir: str | os.PathLike,
    *,
    config: Mapping[str, object],
    repo_dir: str | os.PathLike,
    tools: Sequence[str] = ("dcm2niix",),
) -> tuple[Path, Path]:
    """Write ``config.yaml`` (the resolved configuration) and ``environment.json`` (git state, Python
    packages, platform, torch/CUDA, external tools) into out_dir. Returns both paths."""
    out = Path(out_dir)
    repo = Path(repo_dir)
    names = dependency_names(repo / "pyproject.toml") + list(EXTRA_DISTRIBUTIONS)
    environment = {
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": git_state(repo),
        "headmri": package_versions(["headmri"])["headmri"],
        "packages": package_versions(names),
        "platform": platform_state(),
        "torch": torch_state(),
        "tools": {tool: tool_version(tool) for tool in tools},
        "conda_prefix": os.environ.get("CONDA_PREFIX"),
    }
    config_path, env_path = out / "config.yaml", out / "environment.json"
    header = "# headmri: the resolved configuration of this run (config.yaml, --config and schema defaults)\n"
    write_text(header + yaml.safe_dump(dict(config), sort_keys=False), config_path)
    write_json(environment, env_path)
    log.info("provenance: git %s, %d packages, tools %s", environment["git"], len(names), environment["tools"])
    return config_path, env_path
