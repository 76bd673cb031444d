"""Per-subject parcellation on the MNI grid (embedded and freesurfer backends) and the recon-all command."""

from __future__ import annotations

import shutil
import subprocess

import nibabel as nib
import numpy as np
import pytest

from headmri.backends import load
from headmri.errors import InputError
from headmri.parcellation import freesurfer as fs
from headmri.parcellation.subject import labels_to_mni, load_world_affine

# A small MNI-like reference grid: 1 mm, RAS, origin at -40 mm.
REF_AFFINE = np.array([[1.0, 0, 0, -40], [0, 1, 0, -40], [0, 0, 1, -40], [0, 0, 0, 1]])
REF_SHAPE = (80, 80, 80)


def conformed_affine(n: int, c_ras=(7.0, -12.0, 20.0)) -> np.ndarray:
    """FreeSurfer's conformed vox2ras (LIA, 1 mm) centred on c_ras: what nibabel reads from wmparc.mgz."""
    affine = np.array([[-1.0, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]])
    affine[:3, 3] = np.asarray(c_ras) - affine[:3, :3] @ np.full(3, n / 2)
    return affine


# subject scanner RAS -> MNI RAS: a 90 degree turn about z and a shift
# the functions the parcellate rule's script runs for each backend (headmri.backends)
PARCELLATE_FREESURFER = load("parcellation", "freesurfer")
PARCELLATE_EMBEDDED = load("parcellation", "embedded")
SUBJECT_TO_MNI = np.array([[0.0, -1, 0, 5], [1, 0, 0, -3], [0, 0, 1, 2], [0, 0, 0, 1]])


def write_mask(path, mask=None):
    mask = np.ones(REF_SHAPE, dtype=np.uint8) if mask is None else mask.astype(np.uint8)
    nib.save(nib.Nifti1Image(mask, REF_AFFINE), path)
    return path


def mni_voxel_of(source_voxel, source_affine, subject_to_mni=SUBJECT_TO_MNI) -> tuple[int, ...]:
    world = subject_to_mni @ source_affine @ np.append(np.asarray(source_voxel, float), 1)
    voxel = np.linalg.inv(REF_AFFINE) @ world
    assert np.allclose(voxel, np.round(voxel))
    return tuple(int(v) for v in np.round(voxel[:3]))


@pytest.fixture
def wmparc(tmp_path):
    """A wmparc-like label image on a conformed grid, saved as .mgz like recon-all's."""
    n = 64
    data = np.zeros((n, n, n), dtype=np.int32)
    data[30, 20, 40] = 1024  # one voxel of ctx-lh-precentral
    data[10:14, 10:14, 10:14] = 4  # a lateral ventricle: excluded
    data[40:44, 40:44, 20:24] = 5001  # unsegmented white matter: excluded
    data[45:50, 30:35, 30:35] = 3022  # wm-lh-postcentral
    affine = conformed_affine(n)
    path = tmp_path / "wmparc.mgz"
    nib.save(nib.MGHImage(data, affine), path)
    return path, data, affine


@pytest.fixture
def affine_txt(tmp_path):
    path = tmp_path / "affine.txt"
    np.savetxt(path, SUBJECT_TO_MNI)
    return path


# --- freesurfer backend ------------------------------------------------------------------------------------


def test_wmparc_voxel_lands_where_the_affine_says(tmp_path, wmparc, affine_txt):
    path, data, affine = wmparc
    out = PARCELLATE_FREESURFER(
        tmp_path / "dseg.nii.gz", mask_mni=write_mask(tmp_path / "mask.nii.gz"),
        wmparc=path, affine=affine_txt, subject="sub-01",
    )
    codes = np.asarray(nib.load(tmp_path / "dseg.nii.gz").dataobj)
    target = mni_voxel_of((30, 20, 40), affine)
    assert codes[target] == 1024
    assert np.count_nonzero(codes == 1024) == 1
    assert np.count_nonzero(codes == 3022) == 125  # a 5x5x5 block stays a 5x5x5 block
    assert np.allclose(out.affine, REF_AFFINE)


def test_moved_labels_stay_integer_lut_codes_and_excluded_ones_are_gone(tmp_path, wmparc, affine_txt):
    path, data, _ = wmparc
    PARCELLATE_FREESURFER(
        tmp_path / "dseg.nii.gz", mask_mni=write_mask(tmp_path / "mask.nii.gz"),
        wmparc=path, affine=affine_txt, subject="sub-01",
    )
    img = nib.load(tmp_path / "dseg.nii.gz")
    assert img.get_data_dtype().kind == "i"
    assert set(np.unique(np.asarray(img.dataobj)).tolist()) == {0, 1024, 3022}


def test_oblique_affine_keeps_only_source_codes(tmp_path):
    """Nearest neighbour never blends labels, even with a rotation that does not fall on the grid."""
    rng = np.random.default_rng(0)
    data = np.repeat(np.repeat(np.repeat(rng.choice([0, 10, 1022, 2024, 3022], size=(8, 8, 8)), 8, 0), 8, 1), 8, 2)
    theta = np.deg2rad(17)
    rotation = np.array([[np.cos(theta), -np.sin(theta), 0, 1.5], [np.sin(theta), np.cos(theta), 0, -2.2], [0, 0, 1, 0.7], [0, 0, 0, 1]])
    moved = np.asarray(labels_to_mni(nib.MGHImage(data.astype(np.int32), conformed_affine(64)), rotation,
                                     nib.Nifti1Image(np.zeros(REF_SHAPE, np.uint8), REF_AFFINE)).dataobj)
    assert set(np.unique(moved).tolist()) <= {0, 10, 1022, 2024, 3022}
    assert len(np.unique(moved)) == 5


def test_labels_outside_the_brain_mask_are_removed(tmp_path, wmparc, affine_txt):
    path, _, affine = wmparc
    mask = np.ones(REF_SHAPE, dtype=bool)
    mask[mni_voxel_of((30, 20, 40), affine)] = False
    PARCELLATE_FREESURFER(
        tmp_path / "dseg.nii.gz", mask_mni=write_mask(tmp_path / "mask.nii.gz", mask),
        wmparc=path, affine=affine_txt, subject="sub-01",
    )
    assert not np.any(np.asarray(nib.load(tmp_path / "dseg.nii.gz").dataobj) == 1024)


@pytest.mark.parametrize("content", ["1 0 0\n0 1 0\n", "1 0 0 0\n0 1 0 0\n0 0 1 0\n1 1 1 1\n", "not a matrix\n"])
def test_bad_affine_file_names_subject_and_file(tmp_path, content):
    path = tmp_path / "affine.txt"
    path.write_text(content)
    with pytest.raises(InputError) as err:
        load_world_affine(path, subject="sub-07")
    assert "sub-07" in str(err.value) and str(path) in str(err.value)


def test_unreadable_wmparc_is_an_input_error(tmp_path, affine_txt):
    bad = tmp_path / "wmparc.mgz"
    bad.write_bytes(b"not an mgz file")
    with pytest.raises(InputError, match="sub-02"):
        PARCELLATE_FREESURFER(
            tmp_path / "dseg.nii.gz", mask_mni=write_mask(tmp_path / "mask.nii.gz"),
            wmparc=bad, affine=affine_txt, subject="sub-02",
        )
    assert not (tmp_path / "dseg.nii.gz").exists()


# --- embedded backend --------------------------------------------------------------------------------------


def test_embedded_backend_masks_the_atlas_and_drops_excluded(tmp_path):
    atlas = np.zeros(REF_SHAPE, dtype=np.int32)
    atlas[10:30] = 1024
    atlas[30:50] = 3024
    atlas[50:60] = 43  # Right-Lateral-Ventricle: excluded
    nib.save(nib.Nifti1Image(atlas, REF_AFFINE), tmp_path / "atlas.nii.gz")
    mask = np.zeros(REF_SHAPE, dtype=bool)
    mask[20:70] = True
    PARCELLATE_EMBEDDED(
        tmp_path / "dseg.nii.gz", mask_mni=write_mask(tmp_path / "mask.nii.gz", mask),
        atlas=tmp_path / "atlas.nii.gz", subject="sub-01",
    )
    codes = np.asarray(nib.load(tmp_path / "dseg.nii.gz").dataobj)
    assert np.all(codes[20:30] == 1024) and np.all(codes[30:50] == 3024)
    assert not codes[:20].any() and not codes[50:].any()


def test_embedded_backend_rejects_a_mask_on_another_grid(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros(REF_SHAPE, np.int32), REF_AFFINE), tmp_path / "atlas.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((40, 40, 40), np.uint8), REF_AFFINE), tmp_path / "mask.nii.gz")
    with pytest.raises(InputError, match="sub-03"):
        PARCELLATE_EMBEDDED(
            tmp_path / "dseg.nii.gz", mask_mni=tmp_path / "mask.nii.gz",
            atlas=tmp_path / "atlas.nii.gz", subject="sub-03",
        )


# --- recon-all through Nipype ------------------------------------------------------------------------------


@pytest.fixture
def t1w(tmp_path):
    path = tmp_path / "sub-01_T1w.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4)), path)
    return path


def test_recon_all_command_line(tmp_path, t1w):
    subjects_dir = tmp_path / "freesurfer"
    interface = fs.recon_all_interface(t1w, subject_id="sub-01", subjects_dir=subjects_dir, threads=4)
    assert interface.cmdline == f"recon-all -all -i {t1w} -openmp 4 -parallel -subjid sub-01 -sd {subjects_dir}"
    single = fs.recon_all_interface(t1w, subject_id="sub-01", subjects_dir=subjects_dir, threads=1)
    assert single.cmdline == f"recon-all -all -i {t1w} -openmp 1 -subjid sub-01 -sd {subjects_dir}"
    assert subjects_dir.is_dir()


def test_recon_all_needs_an_existing_t1w(tmp_path):
    with pytest.raises(InputError, match="sub-01"):
        fs.recon_all_interface(tmp_path / "missing.nii.gz", subject_id="sub-01", subjects_dir=tmp_path)


def test_recon_all_script_holds_the_nipype_command_and_starts_fresh(tmp_path, t1w):
    subjects_dir = tmp_path / "freesurfer"
    stale = subjects_dir / "sub-01" / "mri"
    stale.mkdir(parents=True)
    script = tmp_path / "recon-all.sh"
    cmdline = fs.write_recon_all_script(script, t1w=t1w, subject_id="sub-01", subjects_dir=subjects_dir, threads=2)
    assert cmdline == f"recon-all -all -i {t1w} -openmp 2 -parallel -subjid sub-01 -sd {subjects_dir}"
    text = script.read_text()
    assert cmdline in text.splitlines()
    assert "FS_LICENSE" in text
    assert not stale.exists()
    subprocess.run(["bash", "-n", str(script)], check=True)  # valid bash
    # without a license the script stops before recon-all
    result = subprocess.run(["bash", str(script)], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert result.returncode != 0 and "FS_LICENSE" in result.stderr


def test_wmparc_path_follows_freesurfer_layout(tmp_path):
    assert fs.wmparc_path(tmp_path, "sub-01") == tmp_path / "sub-01" / "mri" / "wmparc.mgz"


@pytest.mark.freesurfer
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("recon-all") is None, reason="recon-all is not on PATH (FreeSurfer not installed)")
def test_recon_all_autorecon1_conforms_in_scanner_ras(tmp_path):
    """recon-all's conformed grid keeps scanner RAS: the template head's centre keeps its coordinates."""
    from headmri.templates import embedded_template

    head = embedded_template().head
    subject_dir = fs.run_recon_all(head, subject_id="sub-01", subjects_dir=tmp_path, threads=2, directive="autorecon1")
    orig = nib.load(subject_dir / "mri" / "orig.mgz")
    assert orig.shape == (256, 256, 256)
    source = nib.load(head)
    centre_world = source.affine @ np.append((np.asarray(source.shape) - 1) / 2, 1)
    orig_voxel = np.linalg.inv(orig.affine) @ centre_world
    assert np.all((orig_voxel[:3] > 0) & (orig_voxel[:3] < 255))
