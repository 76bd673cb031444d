"""2D slice tensors of 3D brains, their geometry, and a fast batch loader.

The names load lazily (PEP 562): a training job imports the loader without the NIfTI reading of the
extraction (nibabel, ISA-L), which only the slice-making jobs need.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "decode": "headmri.slices.extract",
    "extract_slices": "headmri.slices.extract",
    "SliceGeometry": "headmri.slices.geometry",
    "SliceBatchLoader": "headmri.slices.loader",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
