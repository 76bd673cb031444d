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
    # the slicing jobs resize in numpy (headmri.slices.geometry.resize_square): torch cost them 2.5-3 s each
    ("from headmri.slices import extract_slices, SliceGeometry", ["torch"]),
    ("import headmri.training.job", NIFTI + VIT + EXPLAIN_LIBRARIES),
    ("from headmri.models import build_classifier; build_classifier('cnn_demo', 2)", NIFTI + VIT),
    ("import headmri.explain.job", VIT + EXPLAIN_LIBRARIES + ["isal"]),
    # the cohort's sanity table reads explain.json files only (torch cost that job 3-6 s)
    ("import headmri.explain.sanity_table", ["torch", *NIFTI]),
    # the fMRI paper's CNNs are known (size, names) without torchvision; only building one loads it
    ("from headmri.models import encoder_input_size; encoder_input_size('googlenet'); encoder_input_size('resnet18')",
     NIFTI + VIT),
])
def test_a_job_module_loads_only_what_it_uses(code, absent):
    assert loaded_after(code, absent) == []


# What the workflow asks when it plans jobs (workflow/rules/common.smk, train.smk): the slice size of each
# named encoder and, on a machine without a GPU driver, the device of `compute.device: auto`. Importing
# torch there cost 7-10 s of every Snakemake start, dry runs included.
PLANNING = ("import headmri.compute as c; c.GPU_DRIVER_PATHS = ('/no-such-driver',); assert c.resolve_device('auto') == 'cpu'\n"
            "from headmri.model_inputs import slice_sizes\n"
            "assert slice_sizes(['biomedclip', 'vit_tiny_demo', 'cnn_demo', 'googlenet', 'resnet3d']) == "
            "{'biomedclip': 224, 'vit_tiny_demo': 112, 'cnn_demo': 64, 'googlenet': 224}")


def test_planning_the_workflow_imports_no_torch():
    assert loaded_after(PLANNING, ["torch"]) == []
    # the probe sees torch where it is needed: a timm model's size is known by building it
    assert loaded_after(PLANNING + "\nslice_sizes(['timm:vit_tiny_patch16_224'])", ["torch"]) == ["torch"]


def test_the_probe_sees_what_is_loaded():
    # the check above could pass by never seeing anything: the same probe sees a ViT's libraries
    assert loaded_after("from headmri.models import build_classifier; build_classifier('vit_tiny_demo', 2)",
                        VIT) == VIT
    assert loaded_after("from headmri.models import build_classifier; build_classifier('resnet18', 2)",
                        VIT) == ["torchvision"]
    assert "nibabel" in loaded_after("from headmri.slices import extract_slices", NIFTI)
