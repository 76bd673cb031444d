"""torchvision's GoogLeNet and ResNet18 as slice encoders (the fMRI paper's CNNs): random initialisation and
ImageNet weights from a local file or torch's cache (never a download), the paper's freezing, Grad-CAM on
the last block, occlusion, the randomisation test's blocks, and one training job with frozen layers.

All at 224 px on the CPU with batches of 1-2 slices and one training epoch, so each test takes seconds."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from headmri import pretrained
from headmri.atomic import write_tsv
from headmri.config import TrainingConfig
from headmri.errors import ConfigError, InputError
from headmri.explain import methods
from headmri.explain.job import ExplainSettings, FoldInputs, FoldKey, FoldOutputs, SubjectFiles, explain_fold
from headmri.explain.occlusion import RegionOcclusion, SliceRegions
from headmri.explain.sanity import randomised_copy, reinitialised_modules
from headmri.models import build_architecture, build_classifier, encoder_input_size, slice_sizes
from headmri.models.freezing import apply_freeze, resolve_freeze
from headmri.models.torchvision_cnn import TorchvisionCNN
from headmri.slices import extract_slices
from headmri.slices.geometry import SliceGeometry
from headmri.splits import check_leakage, make_splits
from headmri.training import EncoderChoice, FoldJob, FoldSettings, load_trained, save_trained, train_fold

ENCODERS = ("googlenet", "resnet18")
LAST_BLOCK = {"googlenet": "net.inception5b", "resnet18": "net.layer4"}
CLASSES = ("HC", "MWoA", "MWA")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _imagenet_file(encoder: str, path: Path) -> dict[str, torch.Tensor]:
    """A file in torchvision's ImageNet format (1000-class fc, GoogLeNet's auxiliary heads), random values."""
    import torchvision.models as tvm

    torch.manual_seed(1)
    net = tvm.resnet18() if encoder == "resnet18" else tvm.googlenet(aux_logits=True, init_weights=True)
    state = net.state_dict()
    torch.save(state, path)
    return state


def _calibrated(model: TorchvisionCNN, x: torch.Tensor) -> TorchvisionCNN:
    """Batch-norm statistics from ``x`` (what training gives a model): GoogLeNet's initialisation (sd 0.01)
    with the unit statistics of a fresh model shrinks its features to ~1e-11 in evaluation mode."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # a cumulative average: one pass gives the batch's statistics
    with torch.no_grad():
        model.train()(x)
    return model.eval()


@pytest.mark.parametrize("encoder", ENCODERS)
def test_random_cnn_takes_grey_224px_slices_and_trains_every_parameter(encoder, caplog):
    with caplog.at_level(logging.INFO):
        model = build_classifier(encoder, 3, classes=CLASSES)
    assert "RANDOM INITIALISATION" in caplog.text
    assert encoder_input_size(encoder) == 224 and slice_sizes([encoder]) == {encoder: 224}
    assert model.net.fc.out_features == 3 and getattr(model.net, "aux1", None) is None
    x = torch.rand(2, 1, 224, 224)
    model.train()
    logits = model(x)
    assert logits.shape == (2, 3)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 2])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    # grey input is the slice in three channels, normalised with the weights' constants
    model.eval()
    mean, std = torch.tensor(model.mean).view(1, 3, 1, 1), torch.tensor(model.std).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model((x.expand(-1, 3, -1, -1) - mean) / std))


@pytest.mark.parametrize("encoder", ENCODERS)
def test_paper_freezing_trains_only_the_last_block_and_the_classifier(encoder):
    model = build_architecture(encoder, CLASSES)
    trainable = apply_freeze(model, "paper")
    assert trainable == [LAST_BLOCK[encoder], "net.fc"]
    for name, parameter in model.named_parameters():
        assert parameter.requires_grad == name.startswith((LAST_BLOCK[encoder] + ".", "net.fc.")), name
    # frozen batch norms keep their statistics while training; those of the last block follow the batches
    model.train()
    frozen = [m for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d) and not n.startswith(LAST_BLOCK[encoder])]
    learning = [m for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d) and n.startswith(LAST_BLOCK[encoder])]
    assert frozen and learning and not any(m.training for m in frozen) and all(m.training for m in learning)
    before = frozen[0].running_mean.clone()
    model(torch.rand(2, 1, 224, 224)).sum().backward()
    assert torch.equal(frozen[0].running_mean, before)
    assert all(p.grad is None for n, p in model.named_parameters() if not p.requires_grad)
    apply_freeze(model, "none")
    assert all(p.requires_grad for p in model.parameters())


def test_auto_freezing_is_the_papers_with_imagenet_weights_and_none_otherwise():
    assert resolve_freeze("auto", "googlenet", weights_loaded=True) == "paper"
    assert resolve_freeze("auto", "resnet18", weights_loaded=False) == "none"
    assert resolve_freeze("auto", "biomedclip", weights_loaded=True) == "none"  # the structural paper fine-tunes all
    assert resolve_freeze("paper", "vit_tiny_demo", weights_loaded=False) == "paper"
    vit = build_architecture("vit_tiny_demo", ("a", "b"))
    assert apply_freeze(vit, "paper") == ["trunk.blocks.3", "trunk.norm", "head"]
    assert not vit.trunk.blocks[2].attn.qkv.weight.requires_grad and vit.trunk.blocks[3].attn.qkv.weight.requires_grad
    with pytest.raises(ConfigError, match="names no last block"):
        apply_freeze(build_architecture("resnet3d", ("a", "b")), "paper")
    with pytest.raises(ConfigError, match="model.freeze must be one of"):
        resolve_freeze("half", "resnet18", weights_loaded=True)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_imagenet_weights_load_from_a_local_file_or_folder_with_a_new_classifier(encoder, tmp_path):
    state = _imagenet_file(encoder, tmp_path / pretrained.TORCHVISION_FILES[encoder])
    for checkpoint in (tmp_path / pretrained.TORCHVISION_FILES[encoder], tmp_path):
        model = build_classifier(encoder, 3, classes=CLASSES, checkpoint=checkpoint)
        loaded = model.net.state_dict()
        assert all(torch.equal(loaded[k], v) for k, v in state.items() if not k.startswith(("fc.", "aux")))
        assert loaded["fc.weight"].shape == (3, state["fc.weight"].shape[1])


def test_weights_come_from_torchs_hub_cache_and_never_from_the_network(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(ConfigError, match=r"hub cache has no resnet18-f37072fd\.pth.*download https://download\.pytorch\.org"
                       r"/models/resnet18-f37072fd\.pth.*model\.checkpoint.*model\.pretrained: false"):
        build_classifier("resnet18", 2, pretrained=True)
    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    state = _imagenet_file("resnet18", tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    model = build_classifier("resnet18", 2, pretrained=True)
    assert torch.equal(model.net.conv1.weight, state["conv1.weight"])
    with pytest.raises(ConfigError, match="is not a file"):
        build_classifier("googlenet", 2, checkpoint=tmp_path / "missing.pth")


def test_weights_of_another_network_are_refused_naming_the_file(tmp_path):
    _imagenet_file("resnet18", tmp_path / "resnet.pth")
    with pytest.raises(InputError, match=r"resnet\.pth.*do not fit torchvision's googlenet"):
        build_classifier("googlenet", 2, checkpoint=tmp_path / "resnet.pth")


def test_the_weight_file_names_are_torchvisions():
    from torchvision.models import GoogLeNet_Weights, ResNet18_Weights

    urls = {"googlenet": GoogLeNet_Weights.IMAGENET1K_V1.url, "resnet18": ResNet18_Weights.IMAGENET1K_V1.url}
    assert {e: pretrained.TORCHVISION_URL + f for e, f in pretrained.TORCHVISION_FILES.items()} == urls


@pytest.mark.parametrize("encoder", ENCODERS)
def test_gradcam_on_the_last_block_gives_a_slice_sized_map_that_depends_on_the_input(encoder):
    torch.manual_seed(0)
    x = torch.rand(2, 1, 224, 224)
    model = _calibrated(build_architecture(encoder, ("HC", "migraine")), x)
    method = methods.create("gradcam", model, batch_size=2)
    assert method.target_layer == LAST_BLOCK[encoder]
    maps = method.slice_maps(x, 1)
    assert maps.shape == (2, 224, 224) and (maps >= 0).all() and maps.max() > 0
    other = method.slice_maps(torch.rand(2, 1, 224, 224), 1)
    assert np.abs(other - maps).max() > 1e-3 * maps.max()
    assert all(p.requires_grad for p in model.parameters())  # Grad-CAM restores what it froze


@pytest.mark.parametrize("encoder", ENCODERS)
def test_occlusion_scores_regions_of_a_cnn_as_the_subject_probability_drop(encoder):
    grid = (3, 24, 20)
    geometry = SliceGeometry.create(axis=0, size=224, source_shape=grid, source_affine=np.eye(4), kept_indices=range(1, 3))
    labels = np.zeros(grid, np.int32)
    labels[:, 2:12, 2:18], labels[:, 12:22, 2:18] = 11, 12
    regions = SliceRegions(geometry, labels, [11, 12])
    rng = np.random.default_rng(0)
    slices = torch.from_numpy(np.clip(geometry.slices_from_volume(rng.random(grid).astype(np.float32)), 0, 1))[:, None]
    neutral = np.zeros((2, 224, 224), np.float32)
    model = _calibrated(build_architecture(encoder, ("HC", "migraine")), slices)
    values = RegionOcclusion(model, batch_size=2).region_values(slices, 1, regions, neutral)
    assert set(values) == {11, 12} and all(np.isfinite(v) for v in values.values())
    with torch.no_grad():
        before = torch.softmax(model(slices), 1)[:, 1].mean()
        mask = torch.from_numpy(regions.masks(11, np.arange(2)))[:, None]
        after = torch.softmax(model(slices * (1 - mask)), 1)[:, 1].mean()
    assert values[11] == pytest.approx(float(before - after), abs=1e-5)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_the_randomisation_test_reinitialises_the_last_two_blocks_and_the_classifier(encoder):
    model = build_architecture(encoder, ("HC", "migraine")).eval()
    names = reinitialised_modules(model)
    expected = {"googlenet": ["net.inception5b", "net.inception5a", "net.fc"],
                "resnet18": ["net.layer4.1", "net.layer4.0", "net.fc"]}[encoder]
    assert names == expected and reinitialised_modules(model, 1) == [expected[0], "net.fc"]
    randomised, done = randomised_copy(model, seed=3)
    assert done == expected
    after = randomised.state_dict()
    for key, value in model.state_dict().items():  # everything before the re-initialised blocks is the model's
        if not key.startswith(tuple(n + "." for n in expected)):
            assert torch.equal(after[key], value), key
    weighted = [(n, m) for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
                and n.startswith(tuple(expected))]
    assert weighted and all(not torch.equal(randomised.get_submodule(n).weight, m.weight) for n, m in weighted)
    again, _ = randomised_copy(model, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), after.values()))


def _cohort(root: Path, n: int) -> pd.DataFrame:
    """Tiny volumes cut into 224 px slices by the real extractor: 2 slices per subject, a bright block for MWoA."""
    rows = []
    rng = np.random.default_rng(0)
    for i in range(n):
        group = CLASSES[i % 3]
        pid = f"sub-c{i:02d}"
        volume = rng.normal(1.0, 0.1, (4, 16, 16)).astype(np.float32)
        mask = np.zeros(volume.shape, bool)
        mask[1:3, 2:-2, 2:-2] = True
        volume[:, 4:9, 4:9] *= 2.0 if group == "MWoA" else 1.0
        volume[~mask] = 0
        nib.save(nib.Nifti1Image(volume, np.eye(4)), root / f"{pid}_brain.nii.gz")
        nib.save(nib.Nifti1Image(mask.astype(np.uint8), np.eye(4)), root / f"{pid}_mask.nii.gz")
        extract_slices(root / f"{pid}_brain.nii.gz", root / f"{pid}_mask.nii.gz", root / f"{pid}_slices.npy",
                       root / f"{pid}_slices.json", size=224, subject=pid)
        rows.append({"participant_id": pid, "group": group})
    return pd.DataFrame(rows)


def test_a_leave_one_subject_out_fold_trains_googlenet_frozen_to_its_last_block(tmp_path):
    participants = _cohort(tmp_path, 9)
    split = make_splits(participants, list(CLASSES), scheme="loso", val_per_class=1, seed=2)
    check_leakage(split)
    write_tsv(split, tmp_path / "split.tsv")
    state = _imagenet_file("googlenet", tmp_path / "imagenet.pth")
    training = TrainingConfig(epochs=1, batch_size=4, lr=1e-3, warmup_epochs=0, patience=1, seed=0)
    metrics = train_fold(tmp_path / "split.tsv", tmp_path / "out", FoldJob("three", CLASSES, 1, "googlenet"),
                         EncoderChoice("googlenet", checkpoint=tmp_path / "imagenet.pth"), training, tmp_path,
                         FoldSettings(slice_size=224, threads=1, progress=False))
    assert list(metrics["split"]) == ["test", "val"] and list(metrics["n_subjects"]) == [1, 3]
    model, meta = load_trained(tmp_path / "out" / "model.pt")
    assert meta["encoder"] == "googlenet" and meta["target_layer_name"] == "net.inception5b" and meta["input_size"] == 224
    trained = model.net.state_dict()
    assert torch.equal(trained["conv1.conv.weight"], state["conv1.conv.weight"])  # frozen: ImageNet's, untouched
    assert torch.equal(trained["inception4e.branch1.bn.running_mean"], state["inception4e.branch1.bn.running_mean"])
    assert not torch.equal(trained["inception5b.branch1.conv.weight"], state["inception5b.branch1.conv.weight"])
    with pytest.raises(ConfigError, match="slice size is 64 but encoder 'resnet18' takes 224x224"):
        train_fold(tmp_path / "split.tsv", tmp_path / "out2", FoldJob("three", CLASSES, 1, "resnet18"), EncoderChoice("resnet18"),
                   training, tmp_path, FoldSettings(slice_size=64, threads=1, progress=False))


# ---- the explanation job on a CNN: Grad-CAM on the last block and the randomisation test ----------------

GRID = (14, 20, 16)
GRID_AFFINE = np.array([[1.0, 0, 0, -7], [0, 1, 0, -10], [0, 0, 1, -8], [0, 0, 0, 1]])
CODES = [17, 1022, 2022, 3022]  # FreeSurfer codes: left thalamus and three cortical regions


def _grid_labels() -> np.ndarray:
    labels = np.zeros(GRID, np.int16)
    labels[2:7, 3:17, 2:14], labels[7:12, 3:17, 2:14] = 1022, 2022
    labels[2:12, 3:17, 10:14] = 3022
    labels[5:9, 8:12, 3:6] = 17
    return labels


@pytest.mark.parametrize("encoder", ENCODERS)
def test_the_explain_job_runs_gradcam_and_the_randomisation_test_on_the_cnn(encoder, tmp_path):
    geometry = SliceGeometry.create(axis=0, size=224, source_shape=GRID, source_affine=GRID_AFFINE, kept_indices=range(3, 11))
    rng = np.random.default_rng(0)
    groups = {"sub-p1": "migraine", "sub-h1": "HC"}
    files = {}
    for pid in groups:
        brain = np.where(_grid_labels() > 0, rng.random(GRID), 0).astype(np.float32)
        slices = np.clip(geometry.slices_from_volume(brain), 0, 1)
        np.save(tmp_path / f"{pid}_slices.npy", (slices * 255).round().astype(np.uint8))
        (tmp_path / f"{pid}_slices.json").write_text(json.dumps(geometry.to_dict()))
        nib.save(nib.Nifti1Image(_grid_labels(), GRID_AFFINE), tmp_path / f"{pid}_dseg.nii.gz")
        files[pid] = SubjectFiles(tmp_path / f"{pid}_slices.npy", tmp_path / f"{pid}_slices.json", tmp_path / f"{pid}_dseg.nii.gz")
    torch.manual_seed(0)
    model = _calibrated(build_architecture(encoder, ("HC", "migraine")), torch.from_numpy(slices[:, None]).float())
    save_trained(model, tmp_path / "model.pt", task="migraine", fold=1)
    pd.DataFrame({"participant_id": list(groups), "label": [p[4:] for p in groups], "group": list(groups.values()),
                  "class_index": [1, 0], "fold": 1, "split": ["test", "train"]}).to_csv(tmp_path / "split.tsv", sep="\t", index=False)
    table = explain_fold(FoldInputs(tmp_path / "model.pt", tmp_path / "split.tsv", {"sub-p1": files["sub-p1"]}),
                         FoldKey("migraine", ("HC", "migraine"), 1),
                         ExplainSettings(batch_size=4, sanity={"patients": 1, "repeats": 2, "threshold": 0.5, "seed": 0}),
                         FoldOutputs(tmp_path / "regions.tsv", tmp_path / "mean.nii.gz", tmp_path / "explain.json"), device="cpu")
    assert sorted(table["label"]) == CODES and table["value"].gt(0).all()
    summary = json.loads((tmp_path / "explain.json").read_text())
    assert summary["target_layer"] == LAST_BLOCK[encoder]
    assert summary["sanity"]["randomised"] == reinitialised_modules(model)
    assert summary["sanity"]["spearman"] is not None  # the randomised model's maps are not constant
