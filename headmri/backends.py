"""The one dispatch of the preprocessing backends: for each step and backend name, the adapter script
its rule runs, the conda environment it runs in, and the library function that script calls.

The workflow reads this table (``BACKEND`` in ``workflow/rules/common.smk``) to give each rule its
``script:`` and ``conda:``; the config schema's choices for ``preprocessing.<step>`` are its names
(``tests/test_backends.py`` checks both, and that every script calls the function named here); tests of
a backend call ``load(step, name)``, the function its rule runs. A new backend is a module, an adapter
script and one line here. Each backend's adapter imports only its own module, so a job in the FSL
environment never imports torch or ANTs; this module imports nothing heavy, for the same reason.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from headmri.errors import ConfigError

MAIN_ENV = "headmri.yaml"
FSL_ENV = "fsl.yaml"


@dataclass(frozen=True)
class Backend:
    """``script``: the adapter under ``scripts/``; ``env``: its conda environment under ``envs/``;
    ``function``: ``module:name`` of the library function the adapter calls."""

    script: str
    env: str
    function: str

    def load(self) -> Callable:
        module, name = self.function.split(":")
        return getattr(importlib.import_module(module), name)


BACKENDS: dict[str, dict[str, Backend]] = {  # config key preprocessing.<step> -> backend name -> Backend
    "brain_extraction": {
        "embedded": Backend("brain_extraction.py", MAIN_ENV, "headmri.preprocess.embedded:extract_brain_deepbet"),
        "fsl": Backend("brain_extraction_fsl.py", FSL_ENV, "headmri.preprocess.fsl:extract_brain_bet"),
    },
    "registration": {
        "embedded": Backend("register_to_mni.py", MAIN_ENV, "headmri.preprocess.embedded:register_ants"),
        "fsl": Backend("register_to_mni_fsl.py", FSL_ENV, "headmri.preprocess.fsl:register_flirt"),
    },
    "parcellation": {
        "embedded": Backend("parcellate.py", MAIN_ENV, "headmri.parcellation.subject:parcellate_embedded"),
        "freesurfer": Backend("parcellate_freesurfer.py", MAIN_ENV, "headmri.parcellation.subject:parcellate_freesurfer"),
    },
}


def backend(step: str, name: str) -> Backend:
    """The backend ``name`` of preprocessing ``step``, or a ConfigError naming the choices."""
    if step not in BACKENDS:
        raise ConfigError(f"unknown preprocessing step {step!r}; the steps are {sorted(BACKENDS)}")
    if name not in BACKENDS[step]:
        raise ConfigError(f"unknown {step.replace('_', ' ')} backend {name!r}; choose one of {sorted(BACKENDS[step])}")
    return BACKENDS[step][name]


def load(step: str, name: str) -> Callable:
    """The library function the rule of ``step`` runs with backend ``name``."""
    return backend(step, name).load()
