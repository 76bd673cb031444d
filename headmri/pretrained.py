"""Where pretrained weights come from (BiomedCLIP's, and torchvision's ImageNet weights for googlenet and
resnet18), checked without loading a network: when the workflow is planned, so that an
offline run without weights stops before hours of preprocessing, and by the loaders themselves.

BiomedCLIP, in order: ``model.checkpoint`` as a local open_clip file or folder; else (null, or an
``hf-hub:`` id) the Hugging Face cache, then the hub. The loading itself is ``headmri.models.biomedclip``.
torchvision's CNNs: ``model.checkpoint`` (a file or a folder), else with ``model.pretrained`` torch's hub
cache, never the network (``torchvision_weights``); the loading is ``headmri.models.torchvision_cnn``.
"""

from __future__ import annotations

import json
from pathlib import Path

from headmri.errors import ConfigError, InputError

HUB_ID = "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
TIMM_NAME = "vit_base_patch16_224"  # the vision tower the biomedclip encoder loads into
# File names open_clip uses on the hub and in `open_clip.push_to_hf_hub`, in the order we prefer them.
CHECKPOINT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
CONFIG_FILE = "open_clip_config.json"
_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
PROBE_SECONDS = 5.0  # how long planning waits for the hub before calling the machine offline


def where_to_put(hub_id: str = HUB_ID, folder: str | Path = "/path/to/folder") -> str:
    """The instructions for an offline machine: what to download, where to put it, which key to set."""
    repo_id = hub_id[len("hf-hub:"):] if hub_id.startswith("hf-hub:") else hub_id
    return (f"download {CHECKPOINT_FILES[1]} (and {CONFIG_FILE}) from https://huggingface.co/{repo_id} on a machine "
            f"with network, copy them into {folder} and give that folder as the config key model.checkpoint "
            f"(config file `model: {{checkpoint: {folder}}}`, or `snakemake --config model='{{checkpoint: {folder}}}'`)")


def resolve_local(source: str | Path) -> Path:
    """A checkpoint file, or the checkpoint file inside an open_clip model folder."""
    path = Path(source).expanduser()
    if not path.exists():
        raise InputError(
            "no such BiomedCLIP checkpoint file or folder (config model.checkpoint); give an open_clip "
            f"checkpoint ({', '.join(CHECKPOINT_FILES)}) or the folder holding one",
            path=path,
        )
    if path.is_file():
        return path
    _check_folder_config(path)
    for name in CHECKPOINT_FILES:
        if (path / name).is_file():
            return path / name
    candidates = sorted(p for p in path.iterdir() if p.suffix in _SUFFIXES and p.is_file())
    if len(candidates) == 1:
        return candidates[0]
    raise InputError(
        f"the folder holds {'no' if not candidates else 'several'} checkpoint files "
        f"({[p.name for p in candidates]}); expected one of {list(CHECKPOINT_FILES)}",
        path=path,
    )


def _check_folder_config(folder: Path) -> None:
    """If the folder carries open_clip's config, make sure its vision tower is the one we load into."""
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        return
    try:
        config = json.loads(config_path.read_text())
        name = config["model_cfg"]["vision_cfg"].get("timm_model_name")
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"cannot read model_cfg.vision_cfg from the open_clip config ({exc})", path=config_path) from exc
    if name != TIMM_NAME:
        raise InputError(
            f"the open_clip config's vision tower is {name!r}; the biomedclip encoder needs {TIMM_NAME!r}",
            path=config_path,
        )


def cached_checkpoint(hub_id: str) -> Path | None:
    """The checkpoint file of an ``hf-hub:`` model in the local Hugging Face cache, if it is there."""
    from huggingface_hub import try_to_load_from_cache

    for filename in CHECKPOINT_FILES:
        found = try_to_load_from_cache(hub_id[len("hf-hub:"):], filename)
        if isinstance(found, str):
            return Path(found)
    return None


def check_available(checkpoint: str | Path | None, *, probe_seconds: float = PROBE_SECONDS) -> str:
    """Where the weights will come from (a local file, the HF cache, or the hub's id); a ConfigError saying
    where to put them when they can come from nowhere: a local path that does not hold them, or an
    uncached hub model on a machine that cannot reach the hub (offline mode, or no answer within
    ``probe_seconds``)."""
    source = HUB_ID if checkpoint is None else str(checkpoint)
    if not source.startswith("hf-hub:"):
        try:
            return str(resolve_local(source))
        except InputError as error:
            raise ConfigError(f"encoder biomedclip: {error}. To get the weights, {where_to_put(HUB_ID, source)}.") from None
    cached = cached_checkpoint(source)
    if cached is not None:
        return str(cached)
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    try:
        get_hf_file_metadata(hf_hub_url(source[len("hf-hub:"):], CHECKPOINT_FILES[1]), timeout=probe_seconds)
    except Exception as exc:  # offline mode, no route, a timeout, an HTTP error: the hub cannot serve it
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ConfigError(
            f"encoder biomedclip: model.checkpoint is {'null' if checkpoint is None else source}, so the weights "
            f"would come from {source}, which is not in the Hugging Face cache, and the hub cannot be reached "
            f"({type(exc).__name__}: {first}). To run offline, {where_to_put(source)}."
        ) from None
    return source


# --- torchvision's ImageNet weights (the googlenet and resnet18 encoders) ---------------------------------
# torchvision's file names (the last part of `<Model>_Weights.IMAGENET1K_V1.url`; tests/test_torchvision_cnn.py
# checks them against torchvision), so that planning can say where they go without importing torchvision.
TORCHVISION_FILES = {"googlenet": "googlenet-1378be20.pth", "resnet18": "resnet18-f37072fd.pth"}
TORCHVISION_URL = "https://download.pytorch.org/models/"


def torch_hub_checkpoints() -> Path:
    """torch's hub cache for model weights (``$TORCH_HOME/hub/checkpoints``, by default
    ``~/.cache/torch/hub/checkpoints``): where torchvision keeps the weights it downloaded."""
    from torch.hub import get_dir  # torch's own rule for the folder, not a copy of it

    return Path(get_dir()) / "checkpoints"


def torchvision_where_to_put(encoder: str) -> str:
    name = TORCHVISION_FILES[encoder]
    return (f"download {TORCHVISION_URL}{name} on a machine with network and either put it into torch's hub cache "
            f"({torch_hub_checkpoints()}) or give its path as model.checkpoint; or set model.pretrained: false to train "
            "from a random initialisation")


def torchvision_weights(encoder: str, checkpoint: str | Path | None, pretrained: bool) -> Path | None:
    """The ImageNet weights file of a torchvision encoder, never a download: ``model.checkpoint`` (the file,
    or a folder holding torchvision's file name) when given; else, with ``model.pretrained``, torchvision's
    file in torch's hub cache; else None (random initialisation). A ConfigError saying where to put the
    file when it is in neither place."""
    name = TORCHVISION_FILES[encoder]
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if path.is_dir():
            path = path / name
        if not path.is_file():
            raise ConfigError(f"encoder {encoder}: model.checkpoint {str(path)!r} is not a file. To get ImageNet weights, "
                              f"{torchvision_where_to_put(encoder)}.")
        return path
    if not pretrained:
        return None
    cached = torch_hub_checkpoints() / name
    if cached.is_file():
        return cached
    raise ConfigError(f"encoder {encoder}: model.pretrained is true, model.checkpoint is null and torch's hub cache has no "
                      f"{name} ({cached}); nothing is downloaded at run time. To run with ImageNet weights, "
                      f"{torchvision_where_to_put(encoder)}.")
