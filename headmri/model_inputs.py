"""What a model takes, in one place: slices or whole volumes, and the files a job hands it.

Every encoder name (``headmri.encoder_names``) maps to one ``ModelInput``: the ``kind`` the trained
model records in its ``model.pt`` (``slices`` or ``volume``), the job inputs the workflow gives it per
subject, and the file name a participant's input has in a folder. The workflow (``model_inputs`` in
``workflow/rules/train.smk``), the adapters and the training and explanation jobs read this mapping
instead of testing for the 3D baseline themselves. A new kind of input (say RFCS vectors) is a new
``ModelInput`` here and a registry line in ``INPUT_OF_ENCODER``. Imports no torch: the workflow reads it
when it plans jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from headmri.encoder_names import INPUT_SIZES, VOLUME_BASELINE


@dataclass(frozen=True)
class ModelInput:
    """``kind``: the model's input kind (``model.pt`` metadata ``kind``); ``files``: the job's per-subject
    inputs, the first one being the model's input proper (slices: ``slices`` and their geometry JSON,
    ``slices_json``; volumes: ``volumes``); ``folder_pattern``: a participant's file in a folder."""

    kind: str
    files: tuple[str, ...]
    folder_pattern: str

    @property
    def main(self) -> str:
        """The name of the input proper (``slices`` or ``volumes``): the training job's keyword for it."""
        return self.files[0]

    @property
    def is_volume(self) -> bool:
        return self is VOLUMES


SLICES = ModelInput("slices", ("slices", "slices_json"), "{}_slices.npy")
VOLUMES = ModelInput("volume", ("volumes",), "{}_T1w.nii.gz")
INPUT_OF_ENCODER = {VOLUME_BASELINE: VOLUMES}  # every other encoder is a 2D slice classifier
INPUT_OF_KIND = {spec.kind: spec for spec in (SLICES, VOLUMES)}


def model_input(encoder: str) -> ModelInput:
    """What ``encoder`` takes."""
    return INPUT_OF_ENCODER.get(encoder, SLICES)


def input_of_kind(kind: str) -> ModelInput:
    """The input of a trained model from its recorded ``kind`` (``slices`` for models saved before it was)."""
    return INPUT_OF_KIND[kind]


def slice_sizes(encoders: Sequence[str], size: int | None = None) -> dict[str, int]:
    """The slice size each slice encoder of ``encoders`` is fed: ``size`` when the source sets one (every
    encoder must then take it, which training checks), else the encoder's own input size; the volume
    baseline takes no slices and is left out. A source is sliced once per size in the values. Imports torch
    only for a ``timm:<name>`` encoder without a size (its size is known by building it on the meta device)."""
    sizes = {}
    for encoder in encoders:
        if model_input(encoder).is_volume:
            continue
        if size is not None:
            sizes[encoder] = int(size)
        elif encoder in INPUT_SIZES:
            sizes[encoder] = INPUT_SIZES[encoder]
        else:
            from headmri.models.registry import encoder_input_size  # torch and timm: the one case that needs them

            sizes[encoder] = encoder_input_size(encoder)
    return sizes
