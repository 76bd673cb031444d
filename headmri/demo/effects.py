"""Planted group effects of the demo cohort: which regions change, in which group, and by how much.

An effect is a relative change of T1w intensity (``effect=-0.25``: 25 % darker) in a named region of the
embedded parcellation: a Desikan-Killiany cortical region (its cortex and/or the white matter beneath it),
a subcortical structure (thalamus, caudate, putamen, pallidum, hippocampus, amygdala, accumbens-area) or
the cerebellar cortex. It models a T1-contrast change of the kind that tissue loss or lower myelin content
produces (grey matter and white matter both lose signal on T1w), exaggerated so that a small cohort shows
it; see docs/demo_cohort.md.

Region names are those of the LUT's ``region`` column (``resources/freesurfer_lut.tsv``), in any letter
case: ``postcentral``, ``Thalamus``, ``accumbens-area``, ``Cerebellum-Cortex``; ``cerebellum`` and
``accumbens`` are accepted for the last two. ``tissue`` (ctx|wm|both) splits cortical regions into cortex
and white matter; a subcortical structure is its own tissue, so it takes ``both`` (or ``n/a``, or an
empty cell), and ``ctx``/``wm`` there is an error rather than a silent no-op.
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
NOT_APPLICABLE = ("", "n/a", "-", "nan")  # a tissue cell left empty (subcortical rows): read as "both"
EFFECT_RANGE = (-0.9, 1.0)  # darker than -90 % or more than twice as bright is no longer a brain
COLUMNS = ("group", "region", "hemisphere", "tissue", "effect")
# Other names for LUT regions (lower case): the effects table may use either.
REGION_ALIASES = {"cerebellum": "cerebellum-cortex", "accumbens": "accumbens-area"}
_SIDES = {"both": ("L", "R", "B"), "lh": ("L",), "rh": ("R",)}
_TISSUE_ORDER = {"ctx": 0, "wm": 1}  # ground-truth rows: cortex before white matter, then the rest
_SIDE_ORDER = {"L": 0, "R": 1, "B": 2}


@dataclass(frozen=True)
class PlantedEffect:
    group: str
    region: str  # a LUT region name, any case: "postcentral", "thalamus", "cerebellum" (see the module doc)
    effect: float  # relative intensity change, e.g. -0.25
    hemisphere: str = "both"  # both | lh | rh
    tissue: str = "both"  # both | ctx | wm (cortical regions); subcortical structures take both

    def __post_init__(self):
        if self.hemisphere not in HEMISPHERES:
            raise ValueError(f"hemisphere must be one of {HEMISPHERES}, got {self.hemisphere!r}")
        if self.tissue not in TISSUES:
            raise ValueError(f"tissue must be one of {TISSUES}, got {self.tissue!r}")
        lo, hi = EFFECT_RANGE
        if not lo <= float(self.effect) <= hi:
            raise ValueError(f"effect must lie in [{lo}, {hi}] (a relative intensity change), got {self.effect}")

    def names(self) -> list[str]:
        """The FreeSurfer LUT names this effect touches: ctx-lh-postcentral, wm-lh-postcentral, ... for a
        cortical region; Left-Thalamus, Right-Thalamus for a subcortical structure; Left/Right-Cerebellum-
        Cortex for the cerebellum. Raises ValueError (naming the region) when there is none."""
        table = lut_labels.lut()
        wanted = REGION_ALIASES.get(self.region.strip().lower(), self.region.strip().lower())
        rows = table[table["region"].str.lower() == wanted]
        if rows.empty:
            raise ValueError(
                f"no Desikan-Killiany region or FreeSurfer structure named {self.region!r} "
                "(names as in the region column of resources/freesurfer_lut.tsv, e.g. postcentral, thalamus)"
            )
        if rows["excluded"].all():
            raise ValueError(f"{self.region!r} is one of the structures the paper excludes; no parcellation has it")
        rows = rows[~rows["excluded"] & rows["hemisphere"].isin(_SIDES[self.hemisphere])]
        if rows.empty:
            raise ValueError(f"{self.region!r} has no label on the {self.hemisphere} side")
        if self.tissue != "both":
            if not rows["tissue"].isin(_TISSUE_ORDER).all():
                raise ValueError(
                    f"{self.region!r} is a subcortical structure, its own tissue: give tissue 'both' (or 'n/a'); "
                    "ctx and wm split cortical regions into cortex and the white matter beneath"
                )
            kept = rows[rows["tissue"] == self.tissue]
            if kept.empty:
                raise ValueError(
                    f"{self.region!r} has no {self.tissue} label (it is {', '.join(rows['name'])}); give tissue 'both'"
                )
            rows = kept
        order = sorted(
            rows.index,
            key=lambda c: (_TISSUE_ORDER.get(rows.loc[c, "tissue"], 2), _SIDE_ORDER[rows.loc[c, "hemisphere"]], c),
        )
        return [str(rows.loc[c, "name"]) for c in order]

    def codes(self) -> list[int]:
        return [lut_labels.code_of(name) for name in self.names()]

    def as_dict(self) -> dict:
        """The table row (group, region, hemisphere, tissue, effect): how the workflow hands effects to jobs."""
        return {"group": self.group, "region": self.region, "hemisphere": self.hemisphere,
                "tissue": self.tissue, "effect": float(self.effect)}


def read_effects(tsv: str | os.PathLike) -> list[PlantedEffect]:
    """Read an effects table (columns group, region, hemisphere, tissue, effect); check every row."""
    tsv = Path(tsv)
    if not tsv.exists():
        raise InputError("the demo effects table does not exist", path=tsv)
    table = pd.read_csv(tsv, sep="\t", comment="#", dtype=str, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"lacks the column(s) {missing}; expected {list(COLUMNS)}", path=tsv)
    effects = []
    for line, row in enumerate(table.itertuples(index=False), start=2):
        tissue = str(row.tissue).strip()
        try:
            effect = PlantedEffect(
                group=str(row.group).strip(),
                region=str(row.region).strip(),
                hemisphere=str(row.hemisphere).strip(),
                tissue="both" if tissue.lower() in NOT_APPLICABLE else tissue,
                effect=float(row.effect),
            )
            effect.codes()  # the region must exist in the LUT
        except (ValueError, KeyError) as exc:
            raise InputError(f"row {line}: {exc}", path=tsv) from exc
        effects.append(effect)
    return effects


def missing_from_atlas(effects: list[PlantedEffect], atlas_labels) -> list[str]:
    """'name (code)' of every planted LUT label that the atlas does not hold (nothing would be planted)."""
    present = set(int(c) for c in atlas_labels)
    return [f"{name} ({code})" for e in effects for name, code in zip(e.names(), e.codes()) if code not in present]


def ground_truth_table(effects: list[PlantedEffect]) -> pd.DataFrame:
    """One row per group and LUT label changed: group, region, name, label, hemisphere, tissue, effect.

    ``region`` is the LUT's own spelling of the structure (``postcentral``, ``Thalamus``,
    ``Cerebellum-Cortex``) whatever case or alias the effects table used, so that rankings, which name
    regions the same way, can be scored against it.
    """
    rows = []
    table = lut_labels.lut()
    for e in effects:
        for name, code in zip(e.names(), e.codes()):
            rows.append(
                {
                    "group": e.group,
                    "region": table.loc[code, "region"],
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


def effect_gain(
    effect: np.ndarray, scale: float, head: np.ndarray, brain_mask: np.ndarray, *, restore_brain_mean: bool
) -> np.ndarray:
    """The factor a patient's head is multiplied by: ``1 + scale * effect`` (``effect`` from
    :func:`effect_map`, ``scale`` the subject's effect strength), float32.

    With ``restore_brain_mean`` the factor is divided by the ratio it would cause in the brain's mean
    intensity, so the patient's brain has the control's mean and only the planted regions differ from
    the rest of the brain (a classifier cannot tell the groups apart by global brightness; issue 13's
    "brain mean restored" cohorts). The ratio between a planted region and the rest is unchanged.
    """
    gain = 1.0 + np.float32(scale) * effect
    if restore_brain_mean:
        inside = brain_mask > 0.5
        before = float(head[inside].mean(dtype=np.float64))
        after = float((head[inside] * gain[inside]).mean(dtype=np.float64))
        gain = gain * np.float32(before / after)
    return gain.astype(np.float32, copy=False)
