"""Region labels: FreeSurfer LUT codes and names, shared by every parcellation backend.

The table lives in ``resources/freesurfer_lut.tsv`` (codes and names from FreeSurfer's
FreeSurferColorLUT.txt, for the structures wmparc.mgz holds). The 14 structures the structural paper
excludes are marked ``excluded``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

LUT_PATH = Path(__file__).resolve().parent.parent / "resources" / "freesurfer_lut.tsv"

# Vessels 30/62, lateral ventricles 4/43, unsegmented white matter 5001/5002, choroid plexus 31/63,
# inferior lateral ventricles 5/44, 3rd ventricle 14, 4th ventricle 15, CSF 24, optic chiasm 85.
EXCLUDED_CODES = frozenset({30, 62, 4, 43, 5001, 5002, 31, 63, 5, 44, 14, 15, 24, 85})


@lru_cache(maxsize=1)
def lut() -> pd.DataFrame:
    """The region table indexed by LUT code: name, hemisphere (L/R/B), tissue, region, excluded."""
    table = pd.read_csv(LUT_PATH, sep="\t", dtype={"label": int}).set_index("label")
    table["excluded"] = table["excluded"].eq("yes")
    return table


def name_of(code: int) -> str:
    return str(lut().loc[int(code), "name"])


def code_of(name: str) -> int:
    table = lut()
    hits = table.index[table["name"] == name]
    if len(hits) != 1:
        raise KeyError(f"no FreeSurfer LUT region named {name!r}")
    return int(hits[0])


def remove_excluded(labels: np.ndarray) -> np.ndarray:
    """Set the 14 excluded structures to background (0), leaving every other label as it is."""
    out = labels.copy()
    out[np.isin(out, sorted(EXCLUDED_CODES))] = 0
    return out
