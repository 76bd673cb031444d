"""Planted group effects of the demo cohort: which regions change, in which group, and by how much.

An effect is a relative change of T1w intensity in the cortex and/or the underlying white matter of a
Desikan-Killiany region (``effect=-0.25``: 25 % darker). It models a T1-contrast change of the kind that
tissue loss or lower myelin content produces (grey matter and white matter both lose signal on T1w),
exaggerated so that a small cohort shows it; see docs/demo_cohort.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from headmri import labels as lut_labels
from headmri.errors import InputError

HEMISPHERES = ("both", "lh", "rh")
TISSUES = ("both", "ctx", "wm")
EFFECT_RANGE = (-0.9, 1.0)  # darker than -90 % or more than twice as bright is no longer a brain
COLUMNS = ("group", "region", "hemisphere", "tissue", "effect")


@dataclass(frozen=True)
class PlantedEffect:
    group: str
    region: str  # Desikan-Killiany region name as in the LUT, e.g. "postcentral"
    effect: float  # relative intensity change, e.g. -0.25
    hemisphere: str = "both"  # both | lh | rh
    tissue: str = "both"  # both | ctx | wm

    def __post_init__(self):
        if self.hemisphere not in HEMISPHERES:
            raise ValueError(f"hemisphere must be one of {HEMISPHERES}, got {self.hemisphere!r}")
        if self.tissue not in TISSUES:
            raise ValueError(f"tissue must be one of {TISSUES}, got {self.tissue!r}")
        lo, hi = EFFECT_RANGE
        if not lo <= float(self.effect) <= hi:
            raise ValueError(f"effect must lie in [{lo}, {hi}] (a relative intensity change), got {self.effect}")

    def names(self) -> list[str]:
        """The FreeSurfer LUT names this effect touches, e.g. ctx-lh-postcentral, wm-lh-postcentral."""
        sides = ("lh", "rh") if self.hemisphere == "both" else (self.hemisphere,)
        prefixes = ("ctx", "wm") if self.tissue == "both" else (self.tissue,)
        return [f"{prefix}-{side}-{self.region}" for prefix in prefixes for side in sides]

    def codes(self) -> list[int]:
        return [lut_labels.code_of(name) for name in self.names()]


def read_effects(tsv: str | os.PathLike) -> list[PlantedEffect]:
    """Read an effects table (columns group, region, hemisphere, tissue, effect); check every row."""
    tsv = Path(tsv)
    if not tsv.exists():
        raise InputError("the demo effects table does not exist", path=tsv)
    table = pd.read_csv(tsv, sep="\t", comment="#", dtype=str)
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"lacks the column(s) {missing}; expected {list(COLUMNS)}", path=tsv)
    effects = []
    for line, row in enumerate(table.itertuples(index=False), start=2):
        try:
            effect = PlantedEffect(
                group=str(row.group).strip(),
                region=str(row.region).strip(),
                hemisphere=str(row.hemisphere).strip(),
                tissue=str(row.tissue).strip(),
                effect=float(row.effect),
            )
            effect.codes()  # the region must exist in the LUT
        except (ValueError, KeyError) as exc:
            raise InputError(f"row {line}: {exc}", path=tsv) from exc
        effects.append(effect)
    return effects


def ground_truth_table(effects: list[PlantedEffect]) -> pd.DataFrame:
    """One row per group and LUT label changed: group, region, name, label, hemisphere, tissue, effect."""
    rows = []
    for e in effects:
        for name, code in zip(e.names(), e.codes()):
            table = lut_labels.lut()
            rows.append(
                {
                    "group": e.group,
                    "region": e.region,
                    "name": name,
                    "label": code,
                    "hemisphere": table.loc[code, "hemisphere"],
                    "tissue": table.loc[code, "tissue"],
                    "effect": e.effect,
                }
            )
    return pd.DataFrame(rows, columns=["group", "region", "name", "label", "hemisphere", "tissue", "effect"])


def effect_map(atlas_codes: np.ndarray, effects: list[PlantedEffect], group: str) -> np.ndarray:
    """The relative intensity change per voxel for one group (0 where nothing is planted), float32.

    Effects on the same voxel add up. The edges stay sharp here; resampling to the native grid
    (trilinear, through a warp) softens them as partial volume does in a real acquisition.
    """
    out = np.zeros(atlas_codes.shape, dtype=np.float32)
    for e in effects:
        if e.group == group:
            out[np.isin(atlas_codes, e.codes())] += np.float32(e.effect)
    return out
