"""The model-parameter randomisation test (Adebayo et al. 2018): which modules are re-initialised and how,
the correlation it reports for a map that depends on the learnt weights and for one that ignores the
model, and the per-task sanity table."""

import json
import math

import numpy as np
import pytest
import torch

from headmri.errors import InputError
from headmri.explain import methods
from headmri.explain.sanity import (
    randomisation_test,
    randomised_copy,
    reinitialised_modules,
    spearman,
    summarise,
)
from headmri.explain.sanity_table import SANITY_COLUMNS, write_sanity_table
from headmri.models import build_architecture

from box_vit import CLASSES, S, train_box_vit


@pytest.fixture(scope="module")
def box_vit():
    """A small ViT (2 blocks: the test re-initialises both) trained in about a second on images whose classes
    differ in one box."""
    model, patients = train_box_vit()
    return model, patients[:6]


def _block_scores(maps: np.ndarray) -> np.ndarray:
    """One 'region' per 4 x 4 patch of a 32 x 32 map: its mean (64 regions)."""
    return np.array([maps[r:r + 4, c:c + 4].mean() for r in range(0, S, 4) for c in range(0, S, 4)])


def _scorer(method, patients):
    def score(model):
        if method == "input":  # a 'method' that ignores the model: the input image itself
            maps = patients[:, 0].numpy()
        else:
            maps = methods.create(method, model).slice_maps(patients, 1)
        return {f"sub-{i}": _block_scores(m) for i, m in enumerate(maps)}
    return score


@pytest.mark.parametrize("method", ["chefer", "gradcam"])
@pytest.mark.parametrize("seed", [0, 12])
def test_the_randomisation_test_gives_a_low_correlation_for_a_method_that_depends_on_the_weights(method, seed, box_vit, one_thread):
    model, patients = box_vit
    record = randomisation_test(model, _scorer(method, patients), seed=seed)
    # the median over 3 re-initialisations x 6 patients; over base seeds 0, 3, ..., 27 it stayed within -0.36..0.28
    assert record["spearman"] < 0.4 and record["passed"] is True
    assert record["n_patients"] == 6 and len(record["spearman_per_patient"]) == 6 and len(record["spearman_per_seed"]) == 3
    assert record["seeds"] == [seed, seed + 1, seed + 2]
    assert record["randomised"] == ["trunk.blocks.1", "trunk.blocks.0", "trunk.norm", "head"]


def test_the_randomisation_test_fails_a_map_that_ignores_the_model(box_vit, one_thread):
    model, patients = box_vit
    record = randomisation_test(model, _scorer("input", patients), seed=0)
    assert record["spearman"] == pytest.approx(1.0) and record["passed"] is False


def test_the_randomised_copy_reinitialises_only_the_last_blocks_and_head_reproducibly(box_vit):
    model, _ = box_vit
    before = {k: v.clone() for k, v in model.state_dict().items()}
    first, names = randomised_copy(model, seed=3)
    again, _ = randomised_copy(model, seed=3)
    other, _ = randomised_copy(model, seed=4)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key])  # the trained model is untouched
    changed = {k for k, v in first.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith(("trunk.blocks.0.", "trunk.blocks.1.", "trunk.norm.", "head.")) for k in changed)
    assert any(k.startswith("trunk.blocks.0.attn.qkv") for k in changed) and "head.weight" in changed
    assert reinitialised_modules(model, blocks=1) == ["trunk.blocks.1", "trunk.norm", "head"]
    for key, value in first.state_dict().items():
        torch.testing.assert_close(value, again.state_dict()[key])
    assert not torch.equal(first.head.weight, other.head.weight)
    # timm's ViT initialisation: linear weights ~ truncated N(0, 0.02), zero biases, unit layer norms
    block = first.trunk.blocks[1]
    assert block.mlp.fc1.weight.std().item() == pytest.approx(0.02, rel=0.15) and (block.mlp.fc1.bias == 0).all()
    assert (block.norm1.weight == 1).all() and not first.training
    assert names == reinitialised_modules(model)


def test_the_3d_baseline_reinitialises_its_last_residual_blocks_and_fc():
    torch.manual_seed(0)
    model = build_architecture("resnet3d", CLASSES, voxel_size_mm=8.0)
    assert reinitialised_modules(model) == ["backbone.layer4.1", "backbone.layer4.0", "backbone.fc"]
    randomised, _ = randomised_copy(model, seed=0)
    assert torch.equal(randomised.backbone.layer3[1].conv1[0].weight, model.backbone.layer3[1].conv1[0].weight)
    assert not torch.equal(randomised.backbone.layer4[0].conv1[0].weight, model.backbone.layer4[0].conv1[0].weight)
    assert (randomised.backbone.fc.bias == 0).all()


def test_spearman_and_the_summary_handle_ties_constants_and_nan():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, np.nan, 4, 5], [1, 2, 9, 4, 5]) == pytest.approx(1.0)  # the NaN region is left out
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))  # a constant map has no ranking
    trained = {"a": np.arange(5.0), "b": np.arange(5.0), "c": np.ones(5)}
    draws = [{"a": np.arange(5.0), "b": np.arange(5.0)[::-1], "c": np.arange(5.0)},
             {"a": np.arange(5.0), "b": np.arange(5.0), "c": np.arange(5.0)}]
    record = summarise(trained, draws, threshold=0.5)
    assert record["spearman"] == pytest.approx(1.0) and record["passed"] is False  # median of 1, -1, 1, 1; c undefined
    assert record["spearman_per_patient"] == {"a": 1.0, "b": 0.0, "c": None}
    assert record["spearman_per_seed"] == [0.0, 1.0]


def test_the_sanity_table_has_one_row_per_source_task_model_method_and_fold(tmp_path):
    summaries = []
    for fold, rho in ((2, 0.9), (1, 0.1)):
        path = tmp_path / f"fold-{fold}.json"
        path.write_text(json.dumps({"task": "migraine", "fold": fold, "method": "chefer", "sanity": {
            "spearman": rho, "passed": rho < 0.5, "threshold": 0.5, "n_patients": 4, "randomised": ["head"], "seconds": 1.0}}))
        summaries.append(("T1w", "migraine", "vit", path))
    summaries.append(("alff", "migraine", "vit", tmp_path / "fold-1.json"))
    table = write_sanity_table(summaries, tmp_path / "sanity.tsv")
    assert list(table.columns) == list(SANITY_COLUMNS)
    assert list(table["source"]) == ["T1w", "T1w", "alff"]
    assert list(table["fold"]) == [1, 2, 1] and list(table["passed"]) == [True, False, True]
    (tmp_path / "off.json").write_text(json.dumps({"task": "migraine", "fold": 3, "method": "chefer"}))
    with pytest.raises(InputError, match="no randomisation test"):
        write_sanity_table([("T1w", "migraine", "vit", tmp_path / "off.json")], tmp_path / "other.tsv")


def test_the_ranking_figure_title_reports_each_folds_test(tmp_path):
    from headmri.explain.task_figures import sanity_line

    paths = []
    for fold, (rho, passed) in enumerate([(0.12, True), (0.8, False), (None, None)], start=1):
        paths.append(tmp_path / f"fold-{fold}.json")
        paths[-1].write_text(json.dumps({"sanity": {"spearman": rho, "passed": passed, "threshold": 0.5}}))
    assert sanity_line(paths) == ("randomisation test (last blocks re-initialised): Spearman 0.12, 0.80, n/a per fold; "
                                  "passed (< 0.5) in 1 of 3")
    (tmp_path / "off.json").write_text(json.dumps({"sanity": None}))
    assert sanity_line([tmp_path / "off.json"]) is None and sanity_line(None) is None


class _SmallCNN(torch.nn.Module):
    """A plain CNN: ``features`` stages (with a parameter-free pool between them) and a linear head."""

    def __init__(self):
        super().__init__()
        block = lambda i, o: torch.nn.Sequential(torch.nn.Conv2d(i, o, 3, padding=1), torch.nn.BatchNorm2d(o), torch.nn.ReLU())  # noqa: E731
        self.features = torch.nn.Sequential()
        self.features.add_module("block1", block(1, 4))
        self.features.add_module("pool1", torch.nn.MaxPool2d(2))
        self.features.add_module("block2", block(4, 8))
        self.features.add_module("block3", block(8, 8))
        self.head = torch.nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


def test_a_plain_cnn_reinitialises_its_last_stages_and_head_with_pytorchs_defaults():
    torch.manual_seed(0)
    model = _SmallCNN().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # "trained": away from any initialisation
        model.features.block3[1].running_mean.fill_(3.0)
    assert reinitialised_modules(model) == ["features.block3", "features.block2", "head"]
    randomised, _ = randomised_copy(model, seed=0)
    assert torch.equal(randomised.features.block1[0].weight, model.features.block1[0].weight)
    assert not torch.equal(randomised.features.block2[0].weight, model.features.block2[0].weight)
    assert (randomised.features.block3[1].weight == 1).all() and (randomised.features.block3[1].running_mean == 0).all()
    assert randomised.head.weight.abs().max() <= 1 / math.sqrt(8)  # nn.Linear's default: U(-1/sqrt(in), 1/sqrt(in))
