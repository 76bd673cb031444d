"""The encoder registry, the saved-model format and the 3D ResNet-18 baseline (with its training job)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import timm
import torch

from headmri.atomic import write_tsv
from headmri.config import TrainingConfig
from headmri.errors import ConfigError, InputError
from headmri.models import (
    KNOWN_ENCODERS,
    Classifier,
    SliceCNN,
    VolumeClassifier,
    biomedclip,
    build_architecture,
    build_classifier,
    encoder_input_size,
    for_inference,
    is_light_encoder,
    place,
)
from headmri.models.resnet3d import TEMPLATE_SHAPE, volume_shape
from headmri.splits import make_splits
from headmri.training import EncoderChoice, FoldJob, FoldSettings, load_trained, save_trained, train_fold
from headmri.training.volumes import VolumeBatchLoader, load_volume

CLASSES = ("HC", "migraine")


def test_tiny_demo_vit_has_the_layout_of_the_real_encoder():
    torch.manual_seed(0)
    model = build_classifier("vit_tiny_demo", 2, classes=CLASSES)
    assert isinstance(model, Classifier) and model.classes == CLASSES
    assert model.input_size == 112 and model.patch_grid == (14, 14)
    assert model.get_submodule("trunk.blocks.3.norm1") is model.trunk.blocks[-1].norm1  # Grad-CAM's layer
    assert model.trunk.global_pool == "token" and model.head.out_features == 2
    assert model(torch.randn(3, 3, 112, 112)).shape == (3, 2)
    assert model.mean == biomedclip.MEAN and model.std == biomedclip.STD


def test_biomedclip_architecture_and_sizes_without_weights():
    model = build_architecture("biomedclip", CLASSES, device="meta")
    assert model.input_size == 224 and model.patch_grid == (14, 14)
    assert model.trunk.embed_dim == 768 and len(model.trunk.blocks) == 12
    assert (model.mean, model.std) == (biomedclip.MEAN, biomedclip.STD)
    assert encoder_input_size("biomedclip") == 224 and encoder_input_size("vit_tiny_demo") == 112
    assert encoder_input_size("timm:vit_small_patch16_384") == 384 and encoder_input_size("resnet3d") is None


def test_timm_vit_from_a_local_checkpoint_file(tmp_path):
    source = timm.create_model("vit_tiny_patch16_224")  # with timm's 1000-class head, as published checkpoints are
    torch.save(source.state_dict(), tmp_path / "vit_tiny.pth")
    model = build_classifier("timm:vit_tiny_patch16_224", 2, checkpoint=tmp_path / "vit_tiny.pth", classes=CLASSES)
    expected = source.state_dict()
    loaded = model.trunk.state_dict()
    assert set(loaded) == set(expected) - {"head.weight", "head.bias"}
    assert all(torch.equal(value, expected[key]) for key, value in loaded.items())
    assert model.mean == tuple(source.pretrained_cfg["mean"])


@pytest.mark.parametrize(
    "encoder, kwargs, pattern",
    [
        ("vit_giant_typo", {}, r"unknown encoder 'vit_giant_typo'.*biomedclip, vit_tiny_demo, cnn_demo, googlenet, resnet18, resnet3d, timm:<name>"),
        ("timm:no_such_net", {}, r"timm has no model 'no_such_net'"),
        ("timm:resnet18", {}, r"must be a Vision Transformer with a class token"),
        ("vit_tiny_demo", {"pretrained": True}, r"has no pretrained weights"),
        ("resnet3d", {"checkpoint": "x.pt"}, r"has no pretrained weights"),
        ("cnn_demo", {"pretrained": True}, r"has no pretrained weights"),
        ("timm:vit_tiny_patch16_224", {"checkpoint": "/nowhere/x.pth"}, r"is not a file"),
    ],
)
def test_bad_encoder_requests_are_clear_config_errors(encoder, kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        build_classifier(encoder, 2, **kwargs)
    assert "timm:<name>" in KNOWN_ENCODERS


def test_resnet3d_forward_shape_and_target_layer():
    torch.manual_seed(0)
    model = build_classifier("resnet3d", 3, classes=("HC", "migraine", "APTH"))
    assert isinstance(model, VolumeClassifier) and model.input_shape == (91, 109, 91)
    small = VolumeClassifier(("HC", "migraine", "APTH"), voxel_size_mm=6.0)
    x = torch.randn(2, 1, *small.input_shape)
    assert small(x).shape == (2, 3)
    features = {}
    small.get_submodule(small.target_layer_name).register_forward_hook(lambda m, i, o: features.setdefault("x", o))
    small(x)
    assert features["x"].ndim == 5 and features["x"].shape[:2] == (2, 512)


def test_demo_cnn_takes_64px_grey_slices_and_gives_an_8x8_grid_at_its_target_layer():
    torch.manual_seed(0)
    model = build_classifier("cnn_demo", 2, classes=CLASSES)
    assert isinstance(model, SliceCNN) and model.kind == "slices" and model.classes == CLASSES
    assert model.input_size == 64 == encoder_input_size("cnn_demo") and is_light_encoder("cnn_demo")
    features = {}
    model.get_submodule(model.target_layer_name).register_forward_hook(lambda m, i, o: features.setdefault("x", o))
    assert model(torch.rand(3, 1, 64, 64)).shape == (3, 2)
    assert features["x"].shape[-2:] == (8, 8)  # three 2x2 max-pools
    with pytest.raises(ValueError, match="grey slices"):
        model(torch.rand(3, 3, 64, 64))


@pytest.mark.parametrize("encoder", ["vit_tiny_demo", "cnn_demo", "resnet3d"])
def test_saved_model_reloads_identically(encoder, tmp_path):
    torch.manual_seed(0)
    model = VolumeClassifier(CLASSES, voxel_size_mm=8.0) if encoder == "resnet3d" else build_classifier(encoder, 2, classes=CLASSES)
    if encoder == "cnn_demo":
        model(torch.rand(4, 1, 64, 64))  # training-mode pass: batch-norm statistics away from their initial values
    model = place(model, "cpu").eval()  # the layout the jobs train and explain in (channels-last on the CPU)
    save_trained(model, tmp_path / "model.pt", task="migraine", fold=2)
    loaded, meta = load_trained(tmp_path / "model.pt")
    assert meta["task"] == "migraine" and meta["fold"] == 2 and meta["classes"] == list(CLASSES)
    assert meta["kind"] == model.kind and meta["target_layer_name"] == model.target_layer_name
    # a slice model is fed grey slices, as the loader gives them (the folded patch embedding after reloading)
    x = torch.randn(2, 1, *model.input_shape) if encoder == "resnet3d" else torch.rand(2, 1, model.input_size, model.input_size)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(InputError, match="junk.pt"):
        load_trained(tmp_path / "junk.pt")


def _template_brain(path, rng, bright: bool):
    data = np.zeros(TEMPLATE_SHAPE, np.int16)
    data[40:140, 40:180, 30:150] = 1000 + rng.integers(0, 100, (100, 140, 120))
    if bright:
        data[60:100, 60:120, 60:100] += 800
    nib.save(nib.Nifti1Image(data, np.diag([-1.0, 1.0, 1.0, 1.0])), path)  # LAS on disk: loaded as RAS


def test_load_volume_scales_downsamples_and_checks_the_grid(tmp_path):
    rng = np.random.default_rng(0)
    _template_brain(tmp_path / "b.nii", rng, bright=True)
    volume = load_volume(tmp_path / "b.nii", {"voxel_size_mm": 4.0})
    assert volume.shape == (1, *volume_shape(4.0)) and volume.dtype == np.float32
    assert volume.min() == 0.0 and volume.max() <= 1.0
    # the bright block sits at disk i 60..100, which is RAS i 82..122 once the LAS image is reoriented
    assert volume[0, 25, 22, 20] > 0.8 and volume[0, 12, 22, 20] < 0.3
    nib.save(nib.Nifti1Image(np.ones((10, 10, 10), np.float32), np.eye(4)), tmp_path / "small.nii")
    with pytest.raises(InputError, match=r"subject sub-x.*small.nii.*not on the MNI template grid"):
        load_volume(tmp_path / "small.nii", 2.0, subject="sub-x")


@pytest.mark.slow
def test_resnet3d_baseline_trains_through_the_same_job(tmp_path):
    rng = np.random.default_rng(1)
    rows = []
    for i in range(8):
        group = CLASSES[i % 2]
        pid = f"sub-vol{i:02d}"
        _template_brain(tmp_path / f"{pid}_T1w.nii", rng, bright=group == "migraine")
        rows.append({"participant_id": pid, "group": group})
    split = make_splits(pd.DataFrame(rows), list(CLASSES), folds=2, val_per_class=1, test_per_class=1)
    write_tsv(split, tmp_path / "split.tsv")
    volumes = {r["participant_id"]: tmp_path / f"{r['participant_id']}_T1w.nii" for r in rows}
    training = TrainingConfig(epochs=2, batch_size=4, lr=1e-3, patience=2, seed=0)
    metrics = train_fold(tmp_path / "split.tsv", tmp_path / "out", FoldJob("migraine", CLASSES, 1, "resnet3d"),
                         EncoderChoice("resnet3d", voxel_size_mm=8.0), training, volumes,
                         FoldSettings(threads=2, progress=False))
    assert list(metrics["split"]) == ["test", "val"]
    per_slice = pd.read_csv(tmp_path / "out" / "predictions_slices.tsv", sep="\t")
    assert (per_slice["slice_position"] == 0).all() and per_slice["participant_id"].is_unique  # one volume each
    model, meta = load_trained(tmp_path / "out" / "model.pt")
    assert meta["kind"] == "volume" and meta["voxel_size_mm"] == 8.0 and model.input_shape == volume_shape(8.0)
    batch = next(iter(VolumeBatchLoader([volumes["sub-vol00"]], [0], 1, shuffle=False, seed=0, voxel_size_mm=8.0)))
    assert batch[0].shape == (1, 1, *volume_shape(8.0))


def test_the_demo_cnn_for_inference_folds_its_batch_norms_with_the_same_outputs():
    torch.manual_seed(0)
    model = place(build_classifier("cnn_demo", 2, classes=CLASSES), "cpu")
    for norm in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):  # trained-like statistics
        norm.running_mean.uniform_(-0.5, 0.5)
        norm.running_var.uniform_(0.5, 2.0)
        norm.weight.data.uniform_(0.5, 1.5)
    x = torch.rand(5, 1, 64, 64)
    assert for_inference(model.train()) is model, "a model in training mode is used as it is"
    fused = for_inference(model.eval())
    assert fused is not model and not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), rtol=1e-5, atol=1e-5)
        model.head.weight.mul_(-1)  # the copy does not follow later changes of the weights
        assert not torch.allclose(fused(x), model(x))
    vit = build_classifier("vit_tiny_demo", 2, classes=CLASSES).eval()
    assert for_inference(vit) is vit, "no inference copy: the model itself"


def test_a_model_placed_on_the_cpu_runs_channels_last_with_the_same_outputs():
    torch.manual_seed(0)
    model = build_classifier("cnn_demo", 2, classes=CLASSES).eval()
    x = torch.rand(3, 1, 64, 64)
    with torch.no_grad():
        before = model(x)
        placed = place(model, "cpu")
        conv = next(m for m in placed.modules() if isinstance(m, torch.nn.Conv2d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(placed(x), before, rtol=1e-5, atol=1e-6)
    for other in (VolumeClassifier(CLASSES, voxel_size_mm=8.0), build_classifier("resnet18", 2, classes=CLASSES)):
        assert all(p.is_contiguous() for p in place(other, "cpu").parameters())  # not faster, or 5-D: kept as they are
