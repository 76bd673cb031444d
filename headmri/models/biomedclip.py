"""BiomedCLIP's image encoder: the ViT-B/16 trunk of an open_clip checkpoint, loaded into timm.

BiomedCLIP (``hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224``) is an open_clip model
whose vision tower is open_clip's ``TimmModel`` around timm's ``vit_base_patch16_224`` (pool "", proj
"linear": the trunk keeps timm's default class-token pooling and a separate projection maps it to the
joint embedding). We want the trunk only, so we read the checkpoint's ``visual.trunk.*`` tensors into a
plain timm ViT. That needs neither the text tower (PubMedBERT, which would pull in ``transformers`` and
another download) nor open_clip's image transform (its shortest-side resize and centre crop would cut
the frontal and occipital poles off a 218 x 182 slice).

Weights come from a local checkpoint (file or folder, for offline machines) or from the hub.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import torch

from headmri.encoder_names import INPUT_SIZES
from headmri.errors import ConfigError, InputError
from headmri.pretrained import CHECKPOINT_FILES, CONFIG_FILE, HUB_ID, TIMM_NAME, resolve_local, where_to_put  # noqa: F401  (re-exported)

if TYPE_CHECKING:  # pragma: no cover  (timm loads when a trunk is built)
    from timm.models.vision_transformer import VisionTransformer

log = logging.getLogger(__name__)

INPUT_SIZE = INPUT_SIZES["biomedclip"]
# BiomedCLIP's preprocess_cfg (the OpenAI CLIP constants).
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)

TRUNK_PREFIX = "visual.trunk."
_LIST_AT_MOST = 12


def build_trunk(*, device: str | torch.device | None = None) -> VisionTransformer:
    """The BiomedCLIP trunk architecture: timm ViT-B/16 at 224, class-token pooling, no classifier.

    ``device="meta"`` builds it without allocating or initialising weights (fast, for loading into).
    """
    import timm

    with torch.device(device or "cpu"):
        trunk = timm.create_model(TIMM_NAME, pretrained=False, num_classes=0)
    return trunk


def load_biomedclip_trunk(source: str | Path | None = None) -> VisionTransformer:
    """BiomedCLIP's pretrained trunk, from ``source`` (a local file or folder, or an ``hf-hub:`` id).

    ``None`` means the hub id. Errors say which keys do not match, or how to work offline.
    """
    source = HUB_ID if source is None else source
    path = download_from_hub(str(source)) if str(source).startswith("hf-hub:") else resolve_local(source)
    weights = trunk_weights(read_state_dict(path), path)
    trunk = build_trunk(device="meta")
    check_compatible(trunk.state_dict(), weights, path)
    # assign=True adopts the checkpoint's tensors in place of the meta placeholders (no double copy).
    trunk.load_state_dict(weights, strict=True, assign=True)
    _check_materialised(trunk, path)
    log.info("loaded %d BiomedCLIP trunk tensors from %s", len(weights), path)
    return trunk


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict saved by open_clip (plain, or under "state_dict" as open_clip's trainer saves it)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            # weights_only: a checkpoint is data, never code to run.
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # every reader error means the same thing to the user: not a readable checkpoint
        raise InputError(f"cannot read the checkpoint ({type(exc).__name__}: {exc})", path=path) from exc
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise InputError(f"the checkpoint holds a {type(state).__name__}, not a state dict", path=path)
    # Checkpoints saved from DistributedDataParallel prefix every key with "module.".
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def trunk_weights(state: Mapping[str, torch.Tensor], path: str | Path) -> dict[str, torch.Tensor]:
    """The ``visual.trunk.*`` tensors with the prefix removed; everything else (text tower, projections) dropped."""
    weights = {k[len(TRUNK_PREFIX):]: v for k, v in state.items() if k.startswith(TRUNK_PREFIX)}
    if not weights:
        raise InputError(
            f"no '{TRUNK_PREFIX}*' keys: not an open_clip checkpoint with a timm vision tower "
            f"(first keys: {_listing(list(state))})",
            path=path,
        )
    return weights


def check_compatible(expected: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Raise an InputError naming every missing key, unexpected key and shape mismatch."""
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    mismatched = [
        f"{k} (checkpoint {tuple(weights[k].shape)}, model {tuple(expected[k].shape)})"
        for k in expected
        if k in weights and tuple(weights[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} keys: {_listing(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches: {_listing(mismatched)}")
    if problems:
        raise InputError(
            f"the checkpoint's {TRUNK_PREFIX}* weights do not fit timm {TIMM_NAME}: " + "; ".join(problems),
            path=path,
        )


def download_from_hub(hub_id: str) -> Path:
    """The checkpoint file of an ``hf-hub:`` model, from the local HF cache or else the network."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    repo_id = hub_id[len("hf-hub:"):]
    # The cache first: a machine that downloaded once before can run offline.
    for filename in CHECKPOINT_FILES:
        try:
            return Path(hf_hub_download(repo_id, filename, local_files_only=True))
        except EntryNotFoundError:  # includes LocalEntryNotFoundError: not cached
            continue
    failure: Exception | None = None
    for filename in reversed(CHECKPOINT_FILES):  # BiomedCLIP publishes the .bin
        try:
            return Path(hf_hub_download(repo_id, filename))
        except LocalEntryNotFoundError as exc:  # the network or the hub could not be reached
            failure = exc
            break
        except EntryNotFoundError as exc:  # the repository has no such file: try the other name
            failure = exc
        except OSError as exc:  # offline mode, connection and HTTP errors
            failure = exc
            break
    raise ConfigError(
        f"cannot get {hub_id}: loading from the Hugging Face hub needs the network (or a filled HF cache), "
        f"and it failed ({type(failure).__name__}: {str(failure).splitlines()[0] if failure else ''}). "
        f"Offline, {where_to_put(hub_id)}."
    ) from failure


def _check_materialised(module: torch.nn.Module, path: str | Path) -> None:
    left = [name for name, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if left:
        raise InputError(f"the checkpoint left these tensors unset: {_listing(left)}", path=path)


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_LIST_AT_MOST])
    return shown + (f", ... ({len(names) - _LIST_AT_MOST} more)" if len(names) > _LIST_AT_MOST else "")
