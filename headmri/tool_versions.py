"""Versions of external tools (FSL, FreeSurfer, dcm2niix) and of a conda environment's packages, as the
environment a rule runs in sees them. Kept apart from headmri.provenance so that environments without
torch (FSL's) can report on themselves."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from headmri.atomic import write_json

log = logging.getLogger(__name__)

# How each external tool tells its version. Most print it and exit 0; dcm2niix exits non-zero after
# printing it, so the exit status is not taken as failure.
TOOL_VERSION_ARGS: dict[str, list[str]] = {
    "dcm2niix": ["--version"],
    "flirt": ["-version"],
    "bet": ["-version"],  # bet has no version flag: its usage text names FSL's version line at best
    "recon-all": ["--version"],
    "mri_convert": ["--version"],
}


def tool_version(tool: str, args: Sequence[str] | None = None, *, timeout_s: float = 60) -> str | None:
    """The first non-empty output line of ``tool args`` (its version), or None if it is not on PATH."""
    exe = shutil.which(tool)
    if exe is None:
        return None
    argv = [exe, *(TOOL_VERSION_ARGS.get(tool, ["--version"]) if args is None else args)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"unknown ({type(err).__name__}: {err})"
    lines = [line.strip() for line in (done.stdout + "\n" + done.stderr).splitlines() if line.strip()]
    return lines[0] if lines else f"unknown (no output, exit status {done.returncode})"


def conda_packages(prefix: str | os.PathLike | None, name_prefix: str = "") -> dict[str, str]:
    """Versions of the conda packages installed in an environment, read from its conda-meta records
    (no conda client needed); {} outside a conda environment."""
    if not prefix:
        return {}
    packages = {}
    for record in sorted(Path(prefix, "conda-meta").glob("*.json")):
        meta = json.loads(record.read_text())
        if meta.get("name", "").startswith(name_prefix):
            packages[meta["name"]] = meta.get("version", "")
    return packages


def write_tool_versions(
    path: str | os.PathLike,
    *,
    tools: Sequence[str],
    conda_prefix: str | None = None,
    conda_name_prefix: str = "",
    container: str | None = None,
    fsldir: str | None = None,
) -> Path:
    """Write the versions of external tools as this environment sees them (JSON): each tool's own
    version line (None if not on PATH), FSL's release from $FSLDIR/etc/fslversion, the conda packages
    of the environment, and the container image the rule is configured with."""
    fsl_release = None
    if fsldir and Path(fsldir, "etc", "fslversion").is_file():
        fsl_release = Path(fsldir, "etc", "fslversion").read_text().strip()
    record = {
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tools": {tool: tool_version(tool) for tool in tools},
        "fsl_release": fsl_release,
        "conda_packages": conda_packages(conda_prefix, conda_name_prefix),
        "container": container,
    }
    write_json(record, path)
    log.info("tool versions: %s", record["tools"])
    return Path(path)
