"""BiomedCLIP's trunk loader: open_clip-format checkpoints of ViT-B/16 shape, written here with random weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from open_clip.timm_model import TimmModel
from safetensors.torch import save_file

from headmri.errors import InputError
from headmri.models import biomedclip, build_classifier

# BiomedCLIP's open_clip_config.json as published with the model (model_cfg and preprocess_cfg).
BIOMEDCLIP_CONFIG = {
    "model_cfg": {
        "embed_dim": 512,
        "vision_cfg": {
            "timm_model_name": "vit_base_patch16_224",
            "timm_model_pretrained": False,
            "timm_pool": "",
            "timm_proj": "linear",
            "image_size": 224,
        },
        "text_cfg": {
            "hf_model_name": "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract",
            "hf_tokenizer_name": "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract",
            "hf_proj_type": "mlp",
            "hf_pooler_type": "cls_last_hidden_state_pooler",
            "context_length": 256,
        },
    },
    "preprocess_cfg": {"mean": list(biomedclip.MEAN), "std": list(biomedclip.STD)},
}


@pytest.fixture(scope="module")
def open_clip_state() -> dict[str, torch.Tensor]:
    """An open_clip BiomedCLIP state dict: open_clip's own vision tower for this config, random weights,
    plus text-tower and logit-scale keys that the loader must ignore."""
    vision = BIOMEDCLIP_CONFIG["model_cfg"]["vision_cfg"]
    with torch.device("meta"):  # names and shapes from open_clip; values drawn below (faster than init)
        tower = TimmModel(
            vision["timm_model_name"], embed_dim=BIOMEDCLIP_CONFIG["model_cfg"]["embed_dim"],
            image_size=vision["image_size"], pool=vision["timm_pool"], proj=vision["timm_proj"],
        )
    generator = torch.Generator().manual_seed(0)
    state = {f"visual.{k}": torch.randn(v.shape, generator=generator) for k, v in tower.state_dict().items()}
    state["text.transformer.embeddings.word_embeddings.weight"] = torch.randn(30, 8, generator=generator)
    state["text.proj.0.weight"] = torch.randn(4, 8, generator=generator)
    state["logit_scale"] = torch.tensor(4.6052)
    return state


def _assert_trunk_equals(trunk: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    loaded = trunk.state_dict()
    expected = {k[len("visual.trunk."):]: v for k, v in state.items() if k.startswith("visual.trunk.")}
    assert set(loaded) == set(expected)
    assert len(expected) == 150  # ViT-B/16: every trunk tensor, nothing else
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key


def test_round_trip_from_open_clip_folder_and_safetensors(open_clip_state, tmp_path):
    folder = tmp_path / "BiomedCLIP"
    folder.mkdir()
    torch.save(open_clip_state, folder / "open_clip_pytorch_model.bin")
    (folder / "open_clip_config.json").write_text(json.dumps(BIOMEDCLIP_CONFIG))

    model = build_classifier("biomedclip", 2, checkpoint=folder, classes=("HC", "migraine"))
    _assert_trunk_equals(model.trunk, open_clip_state)
    assert model.input_size == 224 and model.patch_grid == (14, 14)
    assert model.mean == biomedclip.MEAN and model.std == biomedclip.STD
    assert model.classes == ("HC", "migraine")
    assert not any(p.is_meta for p in model.parameters())

    single = tmp_path / "biomedclip.safetensors"
    save_file(open_clip_state, str(single))
    _assert_trunk_equals(biomedclip.load_biomedclip_trunk(single), open_clip_state)


def test_open_clip_trainer_checkpoint_with_module_prefix(open_clip_state, tmp_path):
    path = tmp_path / "epoch_10.pt"
    torch.save({"epoch": 10, "state_dict": {f"module.{k}": v for k, v in open_clip_state.items()}}, path)
    _assert_trunk_equals(biomedclip.load_biomedclip_trunk(path), open_clip_state)


def test_mismatched_checkpoint_names_the_keys(open_clip_state, tmp_path):
    state = dict(open_clip_state)
    state["visual.trunk.pos_embed"] = torch.zeros(1, 50, 768)  # a 112 px grid, not 224
    del state["visual.trunk.blocks.11.mlp.fc2.bias"]
    state["visual.trunk.head.weight"] = torch.zeros(1000, 768)
    path = tmp_path / "wrong.pt"
    torch.save(state, path)
    with pytest.raises(InputError) as caught:
        build_classifier("biomedclip", 2, checkpoint=path)
    message = str(caught.value)
    assert str(path) in message
    assert "missing 1 keys: blocks.11.mlp.fc2.bias" in message
    assert "unexpected 1 keys: head.weight" in message
    assert "pos_embed (checkpoint (1, 50, 768), model (1, 197, 768))" in message


def test_checkpoint_without_a_visual_trunk_is_refused(tmp_path):
    path = tmp_path / "resnet.bin"
    torch.save({"visual.conv1.weight": torch.zeros(2, 3, 1, 1)}, path)
    with pytest.raises(InputError, match=r"no 'visual\.trunk\.\*' keys.*visual\.conv1\.weight"):
        biomedclip.load_biomedclip_trunk(path)


def test_folder_with_another_vision_tower_is_refused(tmp_path):
    config = json.loads(json.dumps(BIOMEDCLIP_CONFIG))
    config["model_cfg"]["vision_cfg"]["timm_model_name"] = "vit_large_patch14_224"
    (tmp_path / "open_clip_config.json").write_text(json.dumps(config))
    torch.save({}, tmp_path / "open_clip_pytorch_model.bin")
    with pytest.raises(InputError, match="vit_large_patch14_224"):
        biomedclip.load_biomedclip_trunk(tmp_path)


def test_missing_local_path_says_which_config_key(tmp_path):
    with pytest.raises(InputError, match="model.checkpoint"):
        build_classifier("biomedclip", 2, checkpoint=tmp_path / "nowhere")


def test_hub_offline_error_and_hub_cache(tmp_path):
    """Offline (HF_HUB_OFFLINE, empty cache): a clear error on how to give a local checkpoint. A model in
    the HF cache is found without the network (here a small, mismatched one, so the error names its file)."""
    hf_home = tmp_path / "hf"
    snapshot = hf_home / "hub" / "models--headmri-test--tiny" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (hf_home / "hub" / "models--headmri-test--tiny" / "refs").mkdir()
    (hf_home / "hub" / "models--headmri-test--tiny" / "refs" / "main").write_text("0" * 40)
    torch.save({"visual.trunk.cls_token": torch.zeros(1, 1, 8)}, snapshot / "open_clip_pytorch_model.bin")
    script = textwrap.dedent(
        """
        import json
        from headmri.models import build_classifier
        out = {}
        for name, source in [("hub", None), ("cache", "hf-hub:headmri-test/tiny")]:
            try:
                build_classifier("biomedclip", 2, checkpoint=source)
                out[name] = "loaded"
            except Exception as exc:
                out[name] = [type(exc).__name__, str(exc)]
        print(json.dumps(out))
        """
    )
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    kind, message = out["hub"]
    assert kind == "ConfigError"
    assert "needs the network" in message and "model.checkpoint" in message and biomedclip.HUB_ID in message
    kind, message = out["cache"]
    assert kind == "InputError"
    assert "open_clip_pytorch_model.bin" in message and "cls_token (checkpoint (1, 1, 8), model (1, 1, 768))" in message
