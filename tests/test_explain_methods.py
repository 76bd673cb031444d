"""The explanation methods behind one interface: the registry, and each method on a tiny model whose answer
is known (a model that reads one region must rank that region first), gradient-weighted rollout against a
direct computation, and occlusion's neutral image from the fold's training controls only."""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from explain_call import explain
from timm.models.vision_transformer import VisionTransformer

from headmri import config
from headmri.errors import ConfigError, InputError
from headmri.explain import methods
from headmri.explain.job import SubjectFiles, neutral_slices
from headmri.explain.occlusion import RegionOcclusion, SliceRegions, paint_regions
from headmri.models import build_architecture
from headmri.slices.geometry import SliceGeometry, resize_stack
from headmri.slices.reference import control_mean_slices
from headmri.training import save_trained

from box_vit import BOX, CLASSES, S, train_box_vit

# ---- the registry -------------------------------------------------------------------------------------

def test_every_registered_method_loads_under_its_own_name_with_one_interface():
    assert set(methods.NAMES) >= {"gradcam", "rollout", "chefer", "occlusion"}
    for name in methods.NAMES:
        cls = methods.method_class(name)
        assert cls.name == name and isinstance(cls.class_specific, bool)
        assert issubclass(cls, methods.RegionMethod if cls.scores_regions else methods.MapMethod)
    assert not methods.method_class("rollout").class_specific
    assert methods.method_class("chefer").class_specific and methods.method_class("occlusion").class_specific
    assert methods.method_class("occlusion").needs_reference


def test_an_unknown_method_is_rejected_by_the_registry_and_the_typed_config():
    with pytest.raises(ConfigError, match="unknown explanation method 'lime'.*known methods: gradcam, rollout, chefer, occlusion"):
        methods.method_class("lime")
    with pytest.raises(ConfigError, match="unknown explanation method 'lime' \\(config explain.method\\)"):
        config.from_mapping({"tasks": [{"name": "t", "classes": ["HC", "migraine"]}], "explain": {"method": "lime"}})
    cfg = config.from_mapping({"tasks": [{"name": "t", "classes": ["HC", "migraine"]}],
                               "explain": {"method": "occlusion", "occlusion": {"batch_size": 7}}})
    assert cfg.explain.method_options() == {"batch_size": 7, "only_slices_with_region": True, "score": "probability",
                                          "mode": "delete", "slice_step": 1}
    with pytest.raises(ConfigError, match="explain.occlusion.slice_step must be 1 or more"):
        config.from_mapping({"tasks": [{"name": "t", "classes": ["HC", "migraine"]}],
                             "explain": {"method": "occlusion", "occlusion": {"slice_step": 0}}})
    with pytest.raises(ConfigError, match="explain.occlusion.score must be one of"):
        config.from_mapping({"tasks": [{"name": "t", "classes": ["HC", "migraine"]}],
                             "explain": {"method": "occlusion", "occlusion": {"score": "logit"}}})
    with pytest.raises(ConfigError, match="explains slices models, not a 'volume' model"):
        methods.check_method("occlusion", "volume")


# ---- gradient-weighted rollout (Chefer et al. 2021b) ----------------------------------------------------

class _MeanPooled(torch.nn.Module):
    """A ViT classifier that pools the mean of its patch tokens (timm global_pool='avg')."""

    def __init__(self):
        super().__init__()
        self.trunk = VisionTransformer(img_size=32, patch_size=8, in_chans=1, embed_dim=32, depth=2, num_heads=2,
                                       num_classes=0, global_pool="avg")
        self.head = torch.nn.Linear(32, 2)

    def forward(self, x):
        return self.head(self.trunk(x))


def _manual_chefer(model, images, target):
    """The ViT's forward written out with explicit attention, and R = I; R += mean_h (dy/dA * A)^+ R."""
    trunk = model.trunk
    x = trunk.norm_pre(trunk.patch_drop(trunk._pos_embed(trunk.patch_embed(images))))
    attentions = []
    for block in trunk.blocks:
        attn = block.attn
        b, n, c = x.shape
        qkv = attn.qkv(block.norm1(x)).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        a = ((attn.q_norm(q) * attn.scale) @ attn.k_norm(k).transpose(-2, -1)).softmax(-1)
        attentions.append(a)
        x = x + block.ls1(attn.proj(attn.norm((a @ v).transpose(1, 2).reshape(b, n, c))))
        x = x + block.ls2(block.mlp(block.norm2(x)))
    x = trunk.norm(x)
    n_prefix = trunk.num_prefix_tokens
    pooled = x[:, 0] if trunk.global_pool == "token" else x[:, n_prefix:].mean(1)
    logits = model.head(trunk.fc_norm(pooled))
    torch.testing.assert_close(logits, model(images), rtol=1e-4, atol=1e-5)  # the manual forward is the model's
    gradients = torch.autograd.grad(logits[:, target].sum(), attentions)  # total derivatives, later blocks included
    relevance = torch.eye(x.shape[1]).expand(len(images), -1, -1)
    for a, g in zip(attentions, gradients):
        relevance = relevance + (g * a).clamp(min=0).mean(1) @ relevance
    rows = relevance[:, 0, n_prefix:] if trunk.global_pool == "token" else relevance[:, n_prefix:, n_prefix:].mean(1)
    return rows.reshape(len(images), *trunk.patch_embed.grid_size).detach().numpy()


@pytest.mark.parametrize("pool", ["token", "avg"])
def test_gradient_weighted_rollout_matches_a_direct_computation(pool, one_thread):
    torch.manual_seed(0)
    if pool == "token":
        model = build_architecture("vit_tiny_demo", CLASSES).eval()
        with torch.no_grad():
            model.head.weight.mul_(20)
    else:
        model = _MeanPooled().eval()
    size = model.trunk.patch_embed.img_size[0]
    images = torch.rand(3, 1, size, size, generator=torch.Generator().manual_seed(1))
    fused = [block.attn.fused_attn for block in model.trunk.blocks]
    chefer = methods.create("chefer", model, batch_size=2)
    for target in (0, 1):
        np.testing.assert_allclose(chefer.coarse_maps(images, target), _manual_chefer(model, images, target), rtol=1e-4, atol=1e-7)
    assert [block.attn.fused_attn for block in model.trunk.blocks] == fused  # switched back
    assert not any(block.attn.attn_drop._forward_hooks for block in model.trunk.blocks)  # no hook left behind
    assert all(p.grad is None and p.requires_grad for p in model.parameters())  # no weight gradients, flags restored
    # one target per slice: each slice gets its own class's map
    mixed = chefer.coarse_maps(images, [1, 0, 1])
    np.testing.assert_allclose(mixed[1], chefer.coarse_maps(images[1:2], 0)[0], rtol=1e-5, atol=1e-8)
    assert chefer.slice_maps(images, 1).shape == (3, size, size)




@pytest.fixture(scope="module")
def box_vit():
    """A small ViT trained (about a second) on images whose classes differ only in one box."""
    model, patients = train_box_vit()
    return model, patients


def _block_scores(maps):
    """Mean map value in each 8 x 8 block of the image, (row, col) -> value."""
    return {(r, c): float(maps[:, r:r + 8, c:c + 8].mean()) for r in range(0, S, 8) for c in range(0, S, 8)}


@pytest.mark.parametrize("method", ["chefer", "rollout"])
def test_a_vit_that_learnt_one_box_has_its_map_there(method, box_vit, one_thread):
    model, patients = box_vit
    scores = _block_scores(methods.create(method, model).slice_maps(patients, 1))
    ranked = sorted(scores, key=scores.get, reverse=True)
    assert ranked[0] == (BOX[0].start, BOX[1].start)
    assert scores[ranked[0]] > 2 * scores[ranked[1]]


def test_the_gradient_weighted_map_changes_with_the_target_class_and_rollout_does_not(box_vit, one_thread):
    model, patients = box_vit
    chefer, rollout = methods.create("chefer", model), methods.create("rollout", model)
    for_patient, for_control = chefer.slice_maps(patients, 1), chefer.slice_maps(patients, 0)
    # not a mere change of scale: the maps differ after each is divided by its maximum
    assert not np.allclose(for_patient / for_patient.max(), for_control / for_control.max(), rtol=0.05, atol=0.01)
    np.testing.assert_array_equal(rollout.slice_maps(patients, 1), rollout.slice_maps(patients, 0))


# ---- region occlusion -----------------------------------------------------------------------------------

GRID = (6, 24, 20)  # sagittal slices along axis 0: images of 20 rows (axis 2) x 24 columns (axis 1)
AFFINE = np.array([[1.0, 0, 0, -3], [0, 1, 0, -12], [0, 0, 1, -10], [0, 0, 0, 1]])
READ = 17  # the region the fixed model reads
CODES = [17, 1022, 2022, 3022]


def _labels():
    labels = np.zeros(GRID, np.int32)
    labels[:, 2:22, 2:18] = 1022
    labels[:, 12:22, 2:18] = 2022
    labels[:, 2:12, 2:6] = 3022
    labels[:, 6:12, 10:16] = READ  # a prism through every slice: the same pixels in each image
    return labels


class _RegionReader(torch.nn.Module):
    """Fixed weights: the patient-class logit is 8 x (mean intensity inside a pixel mask - 0.5)."""

    def __init__(self, mask):
        super().__init__()
        self.register_buffer("mask", torch.as_tensor(mask, dtype=torch.float32))
        self.gain = torch.nn.Parameter(torch.tensor(8.0))

    def forward(self, x):
        mean = (x[:, 0] * self.mask).sum((1, 2)) / self.mask.sum()
        z = self.gain * (mean - 0.5)
        return torch.stack([-z, z], dim=1)


def _cut(geometry, volume):
    return np.clip(geometry.slices_from_volume(volume), 0, 1)


@pytest.mark.parametrize("size", [24, 16])  # slices at the grid's own resolution, and resized as in the pipeline
def test_occlusion_ranks_the_one_region_a_fixed_model_reads_first(size):
    geometry = SliceGeometry.create(axis=0, size=size, source_shape=GRID, source_affine=AFFINE, kept_indices=range(1, 5))
    labels = _labels()
    regions = SliceRegions(geometry, labels, CODES)
    model = _RegionReader(regions.masks(READ)[0] > 0.5)
    rng = np.random.default_rng(0)
    patient = np.where(labels > 0, 0.4 + 0.2 * rng.random(GRID), 0).astype(np.float32)
    patient[labels == READ] = 0.9  # the patient's evidence, where the model looks
    neutral = _cut(geometry, np.where(labels > 0, 0.3, 0.0).astype(np.float32))
    slices = torch.from_numpy(_cut(geometry, patient))[:, None]
    values = RegionOcclusion(model, batch_size=3).region_values(slices, 1, regions, neutral)
    assert set(values) == set(CODES)
    assert max(values, key=values.get) == READ and values[READ] > 0.2
    others = [abs(values[c]) for c in CODES if c != READ]
    if size == geometry.padded:  # no resize: the other regions never touch the pixels read
        assert max(others) < 1e-6
    else:  # resized: neighbours share the border pixels of the read region, and weigh far less
        assert max(others) < 0.25 * values[READ]
    # the drop is that of the subject-level probability (mean over slices), computed directly
    with torch.no_grad():
        before = torch.softmax(model(slices), 1)[:, 1].mean()
        mask = torch.from_numpy(regions.masks(READ, np.arange(4)))[:, None]
        after = torch.softmax(model(slices + mask * (torch.from_numpy(neutral)[:, None] - slices)), 1)[:, 1].mean()
    assert values[READ] == pytest.approx(float(before - after), abs=1e-6)


@pytest.mark.parametrize("size", [16, 24, 40])  # shrunk (antialiased), the grid's own, enlarged
def test_region_masks_are_the_resized_region_indicators(size):
    geometry = SliceGeometry.create(axis=0, size=size, source_shape=GRID, source_affine=AFFINE, kept_indices=range(1, 5))
    labels = _labels()
    labels[2, 3:5, 20:22] = 1022  # a second, separate piece of a region on one slice
    regions = SliceRegions(geometry, labels, [*CODES, 9999])  # and a code no slice holds
    planes = geometry.padded_planes(labels)
    for code in CODES:
        positions = regions.positions(code)
        assert list(positions) == [i for i in range(len(planes)) if (planes[i] == code).any()]
        expected = np.clip(resize_stack((planes[positions] == code).astype(np.float32), size).numpy(), 0, 1)
        np.testing.assert_allclose(regions.masks(code), expected, atol=1e-6)
        # asked for every slice, those without the region get an empty mask
        everywhere = regions.masks(code, np.arange(len(planes)))
        np.testing.assert_allclose(everywhere[positions], expected, atol=1e-6)
        assert not everywhere[np.setdiff1d(np.arange(len(planes)), positions)].any()
    assert regions.masks(9999).shape == (0, size, size)


class _TwoRegionReader(torch.nn.Module):
    """Fixed weights: the patient logit adds 20 x (mean intensity - 0.5) inside each of two pixel masks, so a
    patient bright in both is certain (p = 1 - 1e-7) and stays nearly so when either one is occluded."""

    def __init__(self, first, second):
        super().__init__()
        self.register_buffer("masks", torch.stack([torch.as_tensor(m, dtype=torch.float32) for m in (first, second)]))
        self.gain = torch.nn.Parameter(torch.tensor(20.0))

    def forward(self, x):
        means = torch.einsum("nhw,mhw->nm", x[:, 0], self.masks) / self.masks.sum((1, 2))
        z = (self.gain * (means - 0.5)).sum(1)
        return torch.stack([-z, z], dim=1)


def _two_region_patient():
    """(regions, the two-region model, a patient bright (0.9) in both read regions, the neutral image at 0.3)."""
    geometry = SliceGeometry.create(axis=0, size=24, source_shape=GRID, source_affine=AFFINE, kept_indices=range(1, 5))
    labels = _labels()
    regions = SliceRegions(geometry, labels, CODES)
    model = _TwoRegionReader(regions.masks(READ)[0] > 0.5, regions.masks(3022)[0] > 0.5)
    patient = np.where(labels > 0, 0.5, 0).astype(np.float32)
    patient[(labels == READ) | (labels == 3022)] = 0.9
    neutral = _cut(geometry, np.where(labels > 0, 0.3, 0.0).astype(np.float32))
    slices = torch.from_numpy(_cut(geometry, patient))[:, None]
    return regions, model, slices, neutral


def test_log_odds_occlusion_credits_each_of_two_redundant_regions_that_probability_does_not():
    regions, model, slices, neutral = _two_region_patient()
    probability = RegionOcclusion(model, batch_size=3).region_values(slices, 1, regions, neutral)
    log_odds = RegionOcclusion(model, batch_size=3, score="log_odds").region_values(slices, 1, regions, neutral)
    assert max(probability[READ], probability[3022]) < 0.01  # saturated: occluding either leaves p near 1
    # each read region's drop in log-odds (z - (-z) for logits (-z, z)) is its evidence, 2 x 20 x (0.9 - 0.3)
    assert log_odds[READ] == pytest.approx(24.0, abs=1e-3) and log_odds[3022] == pytest.approx(24.0, abs=1e-3)
    assert max(abs(log_odds[c]) for c in (1022, 2022)) < 1e-6
    with pytest.raises(ValueError, match="score"):
        RegionOcclusion(model, score="logit")
    from headmri.explain import occlusion

    assert occlusion.SCORES == config.OCCLUSION_SCORES  # what the config accepts is what the method computes


def test_insertion_credits_each_of_two_redundant_regions_with_the_rise_it_alone_gives_the_neutral_image():
    regions, model, slices, neutral = _two_region_patient()
    deleted = RegionOcclusion(model, batch_size=3).region_values(slices, 1, regions, neutral)
    inserted = RegionOcclusion(model, batch_size=3, mode="insert").region_values(slices, 1, regions, neutral)
    assert max(deleted[READ], deleted[3022]) < 0.01  # saturated: deleting either leaves p near 1
    # alone in the neutral image each read region takes the logit from 2 x 20 x (0.3 - 0.5) = -8 to +4
    expected = {code: len(regions.positions(code)) / regions.n_slices * (torch.sigmoid(torch.tensor(8.0)).item() - 0)
                for code in (READ, 3022)}
    for code in (READ, 3022):
        assert inserted[code] == pytest.approx(expected[code], abs=1e-4) and inserted[code] > 0.5
    assert max(abs(inserted[c]) for c in (1022, 2022)) < 1e-6  # regions the model does not read
    with pytest.raises(ValueError, match="mode"):
        RegionOcclusion(model, mode="keep")
    from headmri.explain import occlusion

    assert occlusion.MODES == config.OCCLUSION_MODES


def test_occluding_only_the_slices_that_hold_a_region_gives_the_same_values_for_fewer_passes():
    geometry = SliceGeometry.create(axis=0, size=16, source_shape=GRID, source_affine=AFFINE, kept_indices=range(6))
    labels = _labels()
    labels[0:3][labels[0:3] == 2022] = 1022  # 2022 only in slices 3-5
    regions = SliceRegions(geometry, labels, CODES)
    assert list(regions.positions(2022)) == [3, 4, 5] and list(regions.positions(READ)) == list(range(6))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 2)).eval()
    rng = np.random.default_rng(1)
    slices = torch.from_numpy(_cut(geometry, rng.random(GRID).astype(np.float32)))[:, None]
    neutral = _cut(geometry, np.full(GRID, 0.5, np.float32))
    some, every = RegionOcclusion(model, batch_size=5), RegionOcclusion(model, batch_size=5, only_slices_with_region=False)
    fast, full = some.region_values(slices, 1, regions, neutral), every.region_values(slices, 1, regions, neutral)
    assert fast.keys() == full.keys()
    np.testing.assert_allclose([fast[c] for c in CODES], [full[c] for c in CODES], atol=1e-7)
    assert some.forward_passes == 6 + sum(len(regions.positions(c)) for c in CODES) < every.forward_passes == 6 + 6 * len(CODES)
    painted = paint_regions(labels, fast)
    assert painted[labels == 2022] == pytest.approx(fast[2022]) and (painted[labels == 0] == 0).all()


def test_a_slice_step_estimates_each_region_from_every_kth_of_its_slices_weighted_up_to_all():
    geometry = SliceGeometry.create(axis=0, size=16, source_shape=GRID, source_affine=AFFINE, kept_indices=range(6))
    labels = _labels()
    labels[0:5][labels[0:5] == 2022] = 1022  # 2022 on the last slice only: a step must keep it
    regions = SliceRegions(geometry, labels, CODES)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 2)).eval()
    one_image = _cut(geometry, np.random.default_rng(1).random(GRID).astype(np.float32))[3]
    same = torch.from_numpy(np.repeat(one_image[None, None], 6, axis=0))  # every slice the same image
    neutral = np.full((6, 16, 16), 0.5, np.float32)
    exact, stepped = RegionOcclusion(model, batch_size=4), RegionOcclusion(model, batch_size=4, slice_step=2)
    values, estimate = exact.region_values(same, 1, regions, neutral), stepped.region_values(same, 1, regions, neutral)
    # READ's, 1022's and 3022's masks are the same on the slices that hold them, so every slice's drop is the
    # same and the weighted sample of every other slice gives the exact value; 2022 keeps its one slice
    for code in (READ, 3022, 2022):
        assert estimate[code] == pytest.approx(values[code], abs=1e-7) and values[code] != 0
    assert list(stepped._sampled(regions, 2022)[0]) == [5] and stepped._sampled(regions, READ)[1] == 2.0
    assert stepped.forward_passes == 6 + 3 + 3 + 3 + 1 < exact.forward_passes == 6 + 6 + 6 + 6 + 1
    # on slices that differ, an estimate near the exact value, not equal to it
    varied = torch.from_numpy(_cut(geometry, np.random.default_rng(2).random(GRID).astype(np.float32)))[:, None]
    near, far = exact.region_values(varied, 1, regions, neutral), stepped.region_values(varied, 1, regions, neutral)
    assert near[READ] != far[READ] and far[READ] == pytest.approx(near[READ], abs=0.5 * abs(near[READ]) + 1e-3)
    with pytest.raises(ValueError, match="slice_step"):
        RegionOcclusion(model, slice_step=0)


# ---- occlusion in the fold job: the neutral image comes from the fold's training controls only ---------

SHAPE = (14, 20, 16)
JOB_AFFINE = np.array([[1.0, 0, 0, -7], [0, 1, 0, -10], [0, 0, 1, -8], [0, 0, 0, 1]])
JOB_CODES = [17, 1022, 2022, 3022]
# patients p1 (test) and p2 (train); controls h1 (train), h2 (test), h3 (validation)
GROUPS = {"sub-p1": "migraine", "sub-p2": "migraine", "sub-h1": "HC", "sub-h2": "HC", "sub-h3": "HC"}
SPLITS = {"sub-p1": "test", "sub-p2": "train", "sub-h1": "train", "sub-h2": "test", "sub-h3": "val"}


def _job_labels():
    labels = np.zeros(SHAPE, np.int16)
    labels[2:7, 3:17, 2:14] = 1022
    labels[7:12, 3:17, 2:14] = 2022
    labels[2:12, 3:17, 10:14] = 3022
    labels[5:9, 8:12, 3:6] = 17
    return labels


def _write_slices(root, pid, size, brain, kept=range(2, 12)):
    geometry = SliceGeometry.create(axis=0, size=size, source_shape=SHAPE, source_affine=JOB_AFFINE, kept_indices=kept)
    np.save(root / f"{pid}_slices.npy", (np.clip(geometry.slices_from_volume(brain), 0, 1) * 255).round().astype(np.uint8))
    (root / f"{pid}_slices.json").write_text(json.dumps(geometry.to_dict()))
    return SubjectFiles(root / f"{pid}_slices.npy", root / f"{pid}_slices.json", root / f"{pid}_dseg.nii.gz")


@pytest.fixture
def occlusion_fold(tmp_path):
    torch.manual_seed(0)
    model = build_architecture("vit_tiny_demo", CLASSES)
    with torch.no_grad():
        model.head.weight.mul_(20)
    save_trained(model, tmp_path / "model.pt", task="migraine", fold=1)
    rng = np.random.default_rng(0)
    files = {}
    for pid in GROUPS:
        brain = np.where(_job_labels() > 0, rng.random(SHAPE), 0).astype(np.float32)
        files[pid] = _write_slices(tmp_path, pid, model.input_size, brain)
        nib.save(nib.Nifti1Image(_job_labels(), JOB_AFFINE), tmp_path / f"{pid}_dseg.nii.gz")
    pd.DataFrame({
        "participant_id": list(GROUPS), "label": [p[4:] for p in GROUPS], "group": list(GROUPS.values()),
        "class_index": [int(g == "migraine") for g in GROUPS.values()], "fold": 1, "split": [SPLITS[p] for p in GROUPS],
    }).to_csv(tmp_path / "split.tsv", sep="\t", index=False)
    patients = {p: f for p, f in files.items() if GROUPS[p] == "migraine"}
    controls = {p: SubjectFiles(f.slices, f.geometry, None) for p, f in files.items() if GROUPS[p] == "HC"}
    return tmp_path, patients, controls, model.input_size


def _occlude(root, patients, controls, out, **kwargs):
    out.mkdir(exist_ok=True)
    return explain(model_path=root / "model.pt", split_tsv=root / "split.tsv", task="migraine", classes=CLASSES,
                        fold=1, subjects=patients, regions_tsv=out / "regions.tsv", mean_map=out / "mean_map.nii.gz",
                        summary_json=out / "explain.json", montage_png=out / "montage.png", device="cpu",
                        method="occlusion", controls=controls, patients="all",
                        method_options={"batch_size": 16}, **kwargs)


def test_the_occlusion_neutral_image_is_the_mean_of_the_folds_training_controls_only(occlusion_fold, one_thread):
    root, patients, controls, size = occlusion_fold
    like = SliceGeometry.from_json(patients["sub-p1"].geometry)
    split = pd.read_csv(root / "split.tsv", sep="\t")
    neutral, used = neutral_slices(split, 1, "HC", controls, like)
    assert used == ["sub-h1"]  # neither the test control h2 nor the validation control h3
    expected = np.zeros((SHAPE[0], size, size), np.float32)
    expected[2:12] = np.load(controls["sub-h1"].slices).astype(np.float32) / 255
    np.testing.assert_allclose(neutral, expected, atol=1e-6)
    first = _occlude(root, patients, controls, root / "first")
    assert json.loads((root / "first" / "explain.json").read_text())["reference_controls"] == ["sub-h1"]
    # a test (or validation) control's slices change: nothing changes
    rng = np.random.default_rng(5)
    for pid in ("sub-h2", "sub-h3"):
        _write_slices(root, pid, size, rng.random(SHAPE).astype(np.float32))
    again = _occlude(root, patients, controls, root / "again")
    pd.testing.assert_frame_equal(first, again)
    # the training control's slices change: the values change
    _write_slices(root, "sub-h1", size, rng.random(SHAPE).astype(np.float32))
    changed = _occlude(root, patients, controls, root / "changed")
    assert not np.allclose(first["value"], changed["value"])


def test_occlusion_in_the_fold_job_writes_one_value_per_region_and_paints_them(occlusion_fold, one_thread):
    root, patients, controls, _ = occlusion_fold
    table = _occlude(root, patients, controls, root / "out", statistic="max", maps_dir=root / "out" / "maps")
    assert sorted(set(table["participant_id"])) == ["sub-p1", "sub-p2"] and sorted(set(table["label"])) == JOB_CODES
    summary = json.loads((root / "out" / "explain.json").read_text())
    assert summary["method"] == "occlusion" and summary["region_statistic"] is None and summary["class_specific"]
    labels = _job_labels()
    painted = np.asarray(nib.load(root / "out" / "maps" / "sub-p1_space-MNI152NLin6Asym_desc-occlusion_map.nii.gz").dataobj)
    for row in table[table["participant_id"] == "sub-p1"].itertuples():
        np.testing.assert_allclose(painted[labels == row.label], row.value, rtol=1e-5, atol=1e-7)
    assert (painted[labels == 0] == 0).all()
    mean = np.asarray(nib.load(root / "out" / "mean_map.nii.gz").dataobj)
    expected = table.groupby("label")["value"].mean()
    for code in JOB_CODES:
        np.testing.assert_allclose(mean[labels == code], expected[code], rtol=1e-5, atol=1e-7)


def test_occlusion_without_the_training_controls_files_is_an_error(occlusion_fold):
    root, patients, controls, _ = occlusion_fold
    with pytest.raises(InputError, match="no slice files given for the training controls \\['sub-h1'\\] of fold 1"):
        _occlude(root, patients, {p: f for p, f in controls.items() if p != "sub-h1"}, root / "out")
    moved = SliceGeometry.create(axis=0, size=56, source_shape=SHAPE, source_affine=JOB_AFFINE, kept_indices=range(2, 12))
    (root / "small.json").write_text(json.dumps(moved.to_dict()))
    with pytest.raises(InputError, match="subject sub-h1.*not cut from the same grid the same way"):
        control_mean_slices({"sub-h1": (controls["sub-h1"].slices, root / "small.json")},
                            SliceGeometry.from_json(patients["sub-p1"].geometry))


@pytest.mark.parametrize("method", ["rollout", "chefer"])
def test_attention_methods_refuse_a_cnn_when_they_are_built(method):
    cnn = build_architecture("cnn_demo", CLASSES)
    with pytest.raises(ConfigError, match=f"{method}.*Vision Transformer.*gradcam or occlusion"):
        methods.create(method, cnn)
