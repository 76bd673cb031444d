"""Shared test fixtures: small synthetic heads on oblique, non-RAS grids, and the MNI template.

Keep this file small and generic; a fixture used by one test file belongs in that file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from workflow_runner import SCRATCH_ENV as SCRATCH


def pytest_configure(config):
    """In a pytest-xdist worker: torch's threads are the cores shared out over the workers (not each worker a
    thread per core). In the process that starts the run: one scratch folder for the inputs that the workflow
    tests share (workflow_runner), made before any worker starts (they inherit the environment), so that the
    workers build the shared cohort once between them; removed when the run ends."""
    if hasattr(config, "workerinput"):
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // int(config.workerinput.get("workercount", 1))))
        return
    if os.environ.get(SCRATCH):
        return
    config.headmri_scratch = tempfile.mkdtemp(prefix="headmri-tests-")
    os.environ[SCRATCH] = config.headmri_scratch


def pytest_unconfigure(config):
    scratch = getattr(config, "headmri_scratch", None)
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)
        os.environ.pop(SCRATCH, None)


def pytest_collection_modifyitems(config, items):
    """The files with a slow test (workflow runs, training) first, the quick files after, each group in its
    usual order: with pytest-xdist (make test, --no-loadscope-reorder) the long runs start early and the quick
    tests fill the end, where xdist's own order (files with the most tests first) left the long runs for last."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # a stable sort


# Voxel axis directions (columns of the affine) for a few orientations, before any oblique rotation.
AXES = {
    "RAS": np.eye(3),
    "LIA": np.array([[-1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]]),  # i -> left, j -> inferior, k -> anterior
    "LPS": np.diag([-1.0, -1.0, 1.0]),
}


def rotation_xyz(degrees) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler("xyz", degrees, degrees=True).as_matrix()


def grid_affine(shape, voxel_mm, orientation="LIA", oblique_deg=(0.0, 0.0, 0.0), center_mm=(0.0, 0.0, 0.0)) -> np.ndarray:
    """A voxel-to-RAS affine whose grid centre sits at ``center_mm``; rotated by ``oblique_deg`` (x, y, z)."""
    linear = rotation_xyz(oblique_deg) @ AXES[orientation] @ np.diag(np.broadcast_to(voxel_mm, 3).astype(float))
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = np.asarray(center_mm, float) - linear @ ((np.asarray(shape) - 1) / 2.0)
    return affine


def ellipsoid_head(shape, affine, *, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """A "head" (dim ellipsoid, the scalp) around a brighter "brain" ellipsoid, with noise; returns
    (image float32, brain mask bool). Ellipsoids are defined in world mm, so any grid shows the same head."""
    ijk = np.indices(shape).reshape(3, -1).T
    xyz = nib.affines.apply_affine(affine, ijk)
    head = (((xyz - [0, -10, 0]) / [75, 95, 85]) ** 2).sum(axis=1) <= 1
    brain = (((xyz - [0, -10, 5]) / [60, 78, 65]) ** 2).sum(axis=1) <= 1
    rng = np.random.default_rng(seed)
    data = 200.0 * head + 600.0 * brain + rng.normal(0, 10, len(xyz))
    return data.reshape(shape).astype(np.float32).clip(0), brain.reshape(shape)


@pytest.fixture
def one_thread():
    """Tiny models train and run faster on one thread than on two contended ones; restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def write_nifti(tmp_path):
    """write_nifti(name, data, affine) -> path under tmp_path (any dtype, any dimensionality)."""

    def write(name: str, data, affine=None) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine), path)
        return path

    return write


@pytest.fixture
def synthetic_t1w(write_nifti):
    """synthetic_t1w(name, shape=(90, 110, 100), voxel_mm=2, orientation="LIA", oblique_deg=(8, -5, 6))
    -> (path, brain mask array): an ellipsoid head on an oblique non-RAS grid."""

    def make(name="sub-01_T1w.nii.gz", shape=(90, 110, 100), voxel_mm=2.0, orientation="LIA", oblique_deg=(8, -5, 6)):
        affine = grid_affine(shape, voxel_mm, orientation, oblique_deg)
        data, brain = ellipsoid_head(shape, affine)
        return write_nifti(name, data, affine), brain

    return make


@pytest.fixture(scope="session")
def mni_template():
    """The embedded MNI152NLin6Asym 1 mm template (head and brain mask paths)."""
    from headmri.templates import embedded_template

    template = embedded_template()
    assert template.head.exists() and template.brain_mask.exists()
    return template
