"""Each job imports what it uses (issue 17): a GPU node's training job does not load the NIfTI reading
of the slice-making jobs, nor timm and torchvision for a model that is not a ViT."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from workflow_runner import REPO


def loaded_after(code: str, watched: list[str]) -> list[str]:
    """The ``watched`` modules in sys.modules after running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {watched!r} if m in sys.modules]))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    return json.loads(done.stdout.strip().splitlines()[-1])


NIFTI = ["nibabel", "isal", "headmri.nifti_io", "headmri.slices.extract"]
VIT = ["timm", "torchvision"]
EXPLAIN_LIBRARIES = ["pytorch_grad_cam", "matplotlib", "cv2"]


@pytest.mark.parametrize("code, absent", [
    ("import headmri.slices.loader", NIFTI + VIT),
    ("import headmri.training.job", NIFTI + VIT + EXPLAIN_LIBRARIES),
    ("from headmri.models import build_classifier; build_classifier('cnn_demo', 2)", NIFTI + VIT),
    ("import headmri.explain.job", VIT + EXPLAIN_LIBRARIES + ["isal"]),
    # the fMRI paper's CNNs are known (size, names) without torchvision; only building one loads it
    ("from headmri.models import encoder_input_size; encoder_input_size('googlenet'); encoder_input_size('resnet18')",
     NIFTI + VIT),
])
def test_a_job_module_loads_only_what_it_uses(code, absent):
    assert loaded_after(code, absent) == []


def test_the_probe_sees_what_is_loaded():
    # the check above could pass by never seeing anything: the same probe sees a ViT's libraries
    assert loaded_after("from headmri.models import build_classifier; build_classifier('vit_tiny_demo', 2)",
                        VIT) == VIT
    assert loaded_after("from headmri.models import build_classifier; build_classifier('resnet18', 2)",
                        VIT) == ["torchvision"]
    assert "nibabel" in loaded_after("from headmri.slices import extract_slices", NIFTI)
