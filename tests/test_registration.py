"""Affine conventions (ITK and FSL to RAS world) and the registration to MNI.

The registration test builds a subject whose relation to the template is known exactly: the template
brain seen through a known affine, resampled onto an oblique LIA grid. The recovered subject -> MNI
affine must match it within 1 degree and 1 mm over every brain voxel.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from headmri.backends import load
from headmri.errors import ConfigError, InputError
from headmri.preprocess.embedded import read_itk_affine
from headmri.preprocess.mni import skull_stripped_template
from headmri.preprocess.transforms import (
    affine_error,
    apply_affine_to_points,
    fsl_scaled_voxel_matrix,
    fsl_to_ras,
    itk_parameters_to_matrix,
    itk_to_ras,
    ras_to_fsl,
    ras_to_itk,
    rotation_angle_deg,
)

from conftest import grid_affine, rotation_xyz

ANTS = load("registration", "embedded")  # what the register_to_mni rule runs (headmri.backends)
RNG = np.random.default_rng(5)
POINTS = RNG.uniform(-80, 80, (50, 3))


def known_affine(angles=(7.0, -4.0, 5.0), scales=(1.04, 0.97, 1.02), shift=(6.0, -8.0, 5.0)) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] = rotation_xyz(angles) @ np.diag(scales)
    matrix[:3, 3] = shift
    return matrix


# --- ITK ---------------------------------------------------------------------------------------------


def test_itk_parameters_include_the_centre():
    linear = np.array([[1.0, 0.1, 0], [0, 1.0, 0], [0, 0, 1.0]])
    center, translation = np.array([10.0, 0, 0]), np.array([1.0, 2.0, 3.0])
    matrix = itk_parameters_to_matrix([*linear.ravel(), *translation], center)
    x = np.array([4.0, 5.0, 6.0])
    assert np.allclose(apply_affine_to_points(matrix, x)[0], linear @ (x - center) + translation + center)


def test_itk_matrix_read_from_file_maps_points_like_ants(tmp_path):
    import ants

    linear = rotation_xyz((5, -3, 8)) @ np.diag([1.03, 0.98, 1.01])
    transform = ants.create_ants_transform(transform_type="AffineTransform", dimension=3, matrix=linear,
                                           translation=[3.0, -5.0, 7.0], center=[10.0, -20.0, 5.0])
    ants.write_transform(transform, str(tmp_path / "xfm.mat"))
    lps = read_itk_affine(tmp_path / "xfm.mat")
    points = pd.DataFrame(POINTS, columns=["x", "y", "z"])
    mapped = ants.apply_transforms_to_points(3, points, [str(tmp_path / "xfm.mat")]).to_numpy()
    assert np.allclose(mapped, apply_affine_to_points(lps, POINTS), atol=1e-3)


def test_itk_to_ras_maps_moving_ras_points_to_fixed_ras_points(tmp_path):
    """ants maps a point of the moving image to the fixed image with the transform inverted; our RAS
    matrix must do the same to the same points expressed in RAS."""
    import ants

    truth = known_affine()  # moving RAS -> fixed RAS
    lps = ras_to_itk(truth)
    transform = ants.create_ants_transform(transform_type="AffineTransform", dimension=3, matrix=lps[:3, :3],
                                           translation=lps[:3, 3])
    ants.write_transform(transform, str(tmp_path / "xfm.mat"))
    assert np.allclose(itk_to_ras(read_itk_affine(tmp_path / "xfm.mat")), truth, atol=1e-5)
    moving_lps = POINTS * [-1, -1, 1]
    fixed_lps = ants.apply_transforms_to_points(3, pd.DataFrame(moving_lps, columns=["x", "y", "z"]),
                                                [str(tmp_path / "xfm.mat")], whichtoinvert=[True]).to_numpy()
    assert np.allclose(fixed_lps * [-1, -1, 1], apply_affine_to_points(truth, POINTS), atol=1e-3)


def test_itk_round_trip():
    truth = known_affine()
    assert np.allclose(itk_to_ras(ras_to_itk(truth)), truth)


# --- FSL ---------------------------------------------------------------------------------------------


def test_fsl_identity_between_identical_grids_is_the_world_identity():
    for orientation in ("RAS", "LAS", "LIA"):
        affine = grid_affine((91, 109, 91), 2.0, orientation if orientation != "LAS" else "LPS", (4, 0, -3))
        world = fsl_to_ras(np.eye(4), (91, 109, 91), affine, (91, 109, 91), affine)
        assert np.allclose(world, np.eye(4)), orientation


def test_fsl_translation_on_a_neurological_grid_flips_x():
    """The MNI grid stored RAS (det > 0): FSL counts x from the right, so a FLIRT shift of +10 mm along
    its x axis is a shift of -10 mm in world x."""
    shape = (182, 218, 182)
    ras = np.array([[1.0, 0, 0, -91], [0, 1, 0, -126], [0, 0, 1, -72], [0, 0, 0, 1]])
    flirt = np.eye(4)
    flirt[0, 3] = 10.0
    expected = np.eye(4)
    expected[0, 3] = -10.0
    assert np.allclose(fsl_to_ras(flirt, shape, ras, shape, ras), expected)
    # FSL's own copy of the grid is stored radiologically (det < 0): no flip, x shifts +10 mm in voxels
    # that run right to left, which is the same -10 mm in world x.
    las = np.array([[-1.0, 0, 0, 90], [0, 1, 0, -126], [0, 0, 1, -72], [0, 0, 0, 1]])
    assert np.allclose(fsl_to_ras(flirt, shape, las, shape, las), expected)


def _fsl_coordinates(ijk: np.ndarray, shape, affine) -> np.ndarray:
    """FSL's scaled voxel coordinates written out element by element (independent of the module)."""
    zooms = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    coords = ijk * zooms
    if np.linalg.det(np.asarray(affine)[:3, :3]) > 0:
        coords[:, 0] = (shape[0] - 1 - ijk[:, 0]) * zooms[0]
    return coords


def test_fsl_to_ras_recovers_a_known_world_transform_from_point_pairs():
    """Build the FLIRT matrix a perfect registration would produce, from point pairs in FSL coordinates
    computed element by element, and check that the conversion gives back the world transform."""
    source_shape, reference_shape = (96, 110, 88), (182, 218, 182)
    source = grid_affine(source_shape, (1.0, 1.2, 1.5), "LIA", (9, -6, 4))
    reference = np.array([[1.0, 0, 0, -91], [0, 1, 0, -126], [0, 0, 1, -72], [0, 0, 0, 1]])
    truth = known_affine()
    ijk = RNG.uniform(0, 80, (40, 3))
    world_source = apply_affine_to_points(source, ijk)
    world_reference = apply_affine_to_points(truth, world_source)
    ijk_reference = apply_affine_to_points(np.linalg.inv(reference), world_reference)
    a = np.c_[_fsl_coordinates(ijk, source_shape, source), np.ones(len(ijk))]
    b = _fsl_coordinates(ijk_reference, reference_shape, reference)
    flirt = np.eye(4)
    flirt[:3, :] = np.linalg.lstsq(a, b, rcond=None)[0].T
    assert np.allclose(fsl_to_ras(flirt, source_shape, source, reference_shape, reference), truth, atol=1e-6)
    assert np.allclose(ras_to_fsl(truth, source_shape, source, reference_shape, reference), flirt, atol=1e-6)


def test_fsl_scaled_voxel_matrix_matches_the_elementwise_definition():
    for orientation in ("RAS", "LPS", "LIA"):
        shape, affine = (40, 50, 60), grid_affine((40, 50, 60), (1.0, 2.0, 3.0), orientation)
        ijk = RNG.uniform(0, 39, (10, 3))
        assert np.allclose(apply_affine_to_points(fsl_scaled_voxel_matrix(shape, affine), ijk),
                           _fsl_coordinates(ijk, shape, affine))


def test_affine_error_measures_rotation_and_displacement():
    truth = known_affine()
    off = np.eye(4)
    off[:3, :3] = rotation_xyz((0, 0, 2.0))
    angle, displacement = affine_error(off @ truth, truth, POINTS)
    assert angle == pytest.approx(2.0, abs=1e-6)
    assert displacement > 0.5
    assert affine_error(truth, truth, POINTS) == pytest.approx((0.0, 0.0), abs=1e-6)
    assert rotation_angle_deg(np.diag([1.1, 0.9, 1.0])) == pytest.approx(0.0, abs=1e-6)


# --- registration ------------------------------------------------------------------------------------

SUBJECT_SHAPE = (124, 150, 132)  # 1.5 mm: 186 x 225 x 198 mm


def make_subject(template, truth: np.ndarray, folder):
    """The template brain and mask as a subject whose scanner RAS maps to MNI RAS by ``truth``, on an
    oblique LIA grid of 1.5 mm voxels."""
    from nilearn.image import resample_img

    brain = skull_stripped_template(template.head, template.brain_mask)
    mask = nib.load(template.brain_mask)
    affine = grid_affine(SUBJECT_SHAPE, 1.5, "LIA", oblique_deg=(4, 3, -5), center_mm=(0, -18, 18))
    out = {}
    for name, img, interpolation in (("brain", brain, "continuous"), ("mask", mask, "nearest")):
        # The same voxels with the affine inv(truth) @ A: subject point p is template point truth @ p.
        seen = nib.Nifti1Image(img.get_fdata(dtype=np.float32), np.linalg.inv(truth) @ img.affine)
        moved = resample_img(seen, target_affine=affine, target_shape=SUBJECT_SHAPE, interpolation=interpolation,
                             force_resample=True, copy_header=True)
        out[name] = folder / f"sub-01_desc-{name}.nii.gz"
        nib.save(nib.Nifti1Image(moved.get_fdata(dtype=np.float32), affine), out[name])
    return out["brain"], out["mask"]


@pytest.fixture(scope="module")
def registered(mni_template, tmp_path_factory):
    folder = tmp_path_factory.mktemp("registration")
    truth = known_affine()
    brain, mask = make_subject(mni_template, truth, folder)
    outputs = {name: folder / "out" / f"sub-01_{name}" for name in
               ("brain.nii.gz", "mask.nii.gz", "xfm.mat", "affine.txt")}
    ANTS(brain, mask, mni_template.head, mni_template.brain_mask, *outputs.values(),
         transform="AffineFast", subject="sub-01", threads=2)
    return truth, brain, mask, outputs


@pytest.mark.slow
def test_embedded_registration_recovers_a_known_affine(registered):
    truth, _brain, mask, outputs = registered
    mask_img = nib.load(mask)
    brain_points = nib.affines.apply_affine(mask_img.affine, np.argwhere(mask_img.get_fdata() > 0))
    estimated = np.loadtxt(outputs["affine.txt"])
    angle, displacement = affine_error(estimated, truth, brain_points)
    assert angle < 1.0, f"rotation error {angle:.3f} degrees"
    assert displacement < 1.0, f"largest displacement over brain voxels {displacement:.3f} mm"


@pytest.mark.slow
def test_registered_images_lie_on_the_template_grid_and_overlap_it(registered, mni_template):
    _truth, _brain, _mask, outputs = registered
    template_mask = nib.load(mni_template.brain_mask)
    brain_mni, mask_mni = nib.load(outputs["brain.nii.gz"]), nib.load(outputs["mask.nii.gz"])
    for img in (brain_mni, mask_mni):
        assert img.shape == (182, 218, 182) and np.allclose(img.affine, template_mask.affine)
    assert brain_mni.get_data_dtype() == np.float32 and mask_mni.get_data_dtype() == np.uint8
    mask = np.asanyarray(mask_mni.dataobj)
    assert set(np.unique(mask)) == {0, 1}  # nearest neighbour: still binary
    truth = template_mask.get_fdata() > 0
    dice = 2 * (truth & (mask > 0)).sum() / (truth.sum() + (mask > 0).sum())
    assert dice > 0.95, dice


@pytest.mark.slow
def test_affine_file_maps_subject_points_to_template_points_like_the_ants_transform(registered):
    """A point in subject space lands on the template point with the same anatomy, and the saved
    matrix agrees with what ANTs itself does with the saved .mat."""
    import ants

    truth, brain, _mask, outputs = registered
    affine = np.loadtxt(outputs["affine.txt"])
    subject_points = nib.affines.apply_affine(nib.load(brain).affine, [[60, 70, 60], [30, 100, 40], [90, 50, 80]])
    mapped = apply_affine_to_points(affine, subject_points)
    assert np.abs(mapped - apply_affine_to_points(truth, subject_points)).max() < 1.0
    lps = pd.DataFrame(subject_points * [-1, -1, 1], columns=["x", "y", "z"])
    by_ants = ants.apply_transforms_to_points(3, lps, [str(outputs["xfm.mat"])], whichtoinvert=[True]).to_numpy()
    assert np.allclose(by_ants * [-1, -1, 1], mapped, atol=1e-3)


def test_registration_refuses_unknown_backends_and_transforms(tmp_path):
    with pytest.raises(ConfigError, match="unknown registration backend 'spm'"):
        load("registration", "spm")
    with pytest.raises(ConfigError, match="unknown ANTs transform"):
        ANTS("b", "m", "t", "tm", *(tmp_path / n for n in "abcd"), transform="SyN", subject="sub-01")


def test_mask_on_another_grid_is_refused_and_nothing_is_written(tmp_path, write_nifti, mni_template):
    brain = write_nifti("brain.nii.gz", np.ones((60, 70, 60), np.float32), grid_affine((60, 70, 60), 2.0))
    mask = write_nifti("mask.nii.gz", np.ones((60, 70, 61), np.uint8), grid_affine((60, 70, 61), 2.0))
    out = tmp_path / "out"
    with pytest.raises(InputError) as info:
        ANTS(brain, mask, mni_template.head, mni_template.brain_mask, out / "b.nii.gz",
             out / "m.nii.gz", out / "x.mat", out / "a.txt", subject="sub-01")
    assert "sub-01" in str(info.value) and str(brain) in str(info.value)
    assert not out.exists() or not any(out.iterdir())


def test_fsl_template_mask_sits_beside_the_fsl_template():
    from headmri.preprocess.fsl import fsl_template_mask

    assert fsl_template_mask("/fsl/data/standard/MNI152_T1_1mm_brain.nii.gz").name == "MNI152_T1_1mm_brain_mask.nii.gz"
