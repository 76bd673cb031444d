"""The exact FSL command lines Nipype builds for the fsl backend, and real runs when FSL is installed."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest

from headmri.backends import load
from headmri.preprocess.fsl import applyxfm_interface, bet_interface, flirt_interface


@pytest.fixture
def fsl_env(monkeypatch, tmp_path):
    monkeypatch.setenv("FSLOUTPUTTYPE", "NIFTI_GZ")
    monkeypatch.chdir(tmp_path)  # BET writes its input path relative to the working folder
    for name in ("t1w.nii.gz", "brain.nii.gz", "mask.nii.gz", "template.nii.gz"):
        nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), tmp_path / name)
    return tmp_path


def test_bet_command_line(fsl_env):
    interface = bet_interface(fsl_env / "t1w.nii.gz", fsl_env / "work" / "brain.nii.gz", frac=0.35)
    assert interface.cmdline == f"bet t1w.nii.gz {fsl_env}/work/brain.nii.gz -f 0.35 -m"


def test_bet_default_fraction(fsl_env):
    interface = bet_interface(fsl_env / "t1w.nii.gz", fsl_env / "brain.nii.gz", frac=0.5)
    assert interface.cmdline == f"bet t1w.nii.gz {fsl_env}/brain.nii.gz -f 0.50 -m"
    assert interface._list_outputs()["mask_file"] == f"{fsl_env}/brain_mask.nii.gz"


def test_flirt_command_line(fsl_env):
    d = fsl_env
    interface = flirt_interface(d / "brain.nii.gz", d / "template.nii.gz", d / "brain_mni.nii.gz", d / "xfm.mat")
    assert interface.cmdline == (
        f"flirt -in {d}/brain.nii.gz -ref {d}/template.nii.gz -out {d}/brain_mni.nii.gz -omat {d}/xfm.mat -dof 12"
    )


def test_applyxfm_command_line(fsl_env):
    d = fsl_env
    interface = applyxfm_interface(d / "mask.nii.gz", d / "template.nii.gz", d / "xfm.mat", d / "mask_mni.nii.gz",
                                   d / "mask_xfm.mat")
    assert interface.cmdline == (
        f"flirt -in {d}/mask.nii.gz -ref {d}/template.nii.gz -out {d}/mask_mni.nii.gz -omat {d}/mask_xfm.mat "
        f"-applyxfm -init {d}/xfm.mat -interp nearestneighbour"
    )


# --- real runs (only where FSL is installed) ---------------------------------------------------------

needs_bet = pytest.mark.skipif(shutil.which("bet") is None, reason="FSL's bet is not on PATH (install envs/fsl.yaml)")
needs_flirt = pytest.mark.skipif(shutil.which("flirt") is None,
                                 reason="FSL's flirt is not on PATH (install envs/fsl.yaml)")


@pytest.mark.fsl
@pytest.mark.slow
@needs_bet
def test_bet_runs_on_the_template_head(mni_template, tmp_path, monkeypatch):
    monkeypatch.setenv("FSLOUTPUTTYPE", "NIFTI_GZ")
    brain, mask = tmp_path / "brain.nii.gz", tmp_path / "mask.nii.gz"
    load("brain_extraction", "fsl")(mni_template.head, brain, mask, subject="sub-01", frac=0.5)
    found = np.asanyarray(nib.load(mask).dataobj) > 0
    truth = np.asanyarray(nib.load(mni_template.brain_mask).dataobj) > 0
    assert 2 * (found & truth).sum() / (found.sum() + truth.sum()) > 0.8


@pytest.mark.fsl
@pytest.mark.slow
@needs_flirt
def test_flirt_recovers_a_shift_and_writes_a_world_affine(mni_template, tmp_path, monkeypatch):
    from headmri.preprocess.mni import skull_stripped_template
    from headmri.preprocess.transforms import affine_error

    monkeypatch.setenv("FSLOUTPUTTYPE", "NIFTI_GZ")
    template = skull_stripped_template(mni_template.head, mni_template.brain_mask)
    truth = np.eye(4)
    truth[:3, 3] = [4.0, -6.0, 3.0]  # subject point p is template point p + shift
    subject = nib.Nifti1Image(template.get_fdata(dtype=np.float32), np.linalg.inv(truth) @ template.affine)
    nib.save(subject, tmp_path / "brain.nii.gz")
    nib.save(nib.Nifti1Image(np.asanyarray(nib.load(mni_template.brain_mask).dataobj), subject.affine),
             tmp_path / "mask.nii.gz")
    out = {n: tmp_path / "out" / n for n in ("b.nii.gz", "m.nii.gz", "x.mat", "a.txt")}
    load("registration", "fsl")(tmp_path / "brain.nii.gz", tmp_path / "mask.nii.gz", mni_template.head,
                                mni_template.brain_mask, *out.values(), subject="sub-01")
    points = nib.affines.apply_affine(subject.affine, np.argwhere(np.asanyarray(nib.load(tmp_path / "mask.nii.gz").dataobj)))
    angle, displacement = affine_error(np.loadtxt(out["a.txt"]), truth, points)
    assert angle < 1.0 and displacement < 1.0
    assert nib.aff2axcodes(nib.load(out["b.nii.gz"]).affine) == ("R", "A", "S")
