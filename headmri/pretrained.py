"""Where BiomedCLIP's weights come from, checked without torch: when the workflow is planned, so that an
offline run without weights stops before hours of preprocessing, and by the loader itself.

Sources, in order: ``model.checkpoint`` as a local open_clip file or folder; else (null, or an
``hf-hub:`` id) the Hugging Face cache, then the hub. The loading itself is ``headmri.models.biomedclip``.
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
