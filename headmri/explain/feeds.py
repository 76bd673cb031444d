"""How each kind of model input (``headmri.model_inputs``) is explained: which files a subject needs,
how its input is checked against its parcellation's grid, which layer the map methods read by default,
and how one subject's explanation is made. ``feed_for`` picks the feed from the trained model's recorded
``kind``, so the explain job never asks whether a model takes slices or volumes; a new kind of input is a
new class here and a line in ``FEEDS``.

An explanation comes in two parts. ``explain`` runs the model (on the job's device, on the calling
thread) and returns the rest as a function: putting slice maps back on the MNI grid, or painting
region values on the regions. The job runs that rest, with the regional statistics, on a background
thread while the model explains the next subject (``headmri.explain.job``).

- ``SliceFeed``: a subject's slice array and its geometry JSON; ``explain.target_layer`` applies.
- ``VolumeFeed``: a subject's MNI-space brain for the 3D baseline; the model's last convolutional stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import nibabel as nib
import numpy as np
import torch

from headmri.errors import InputError
from headmri.explain import regions as regional
from headmri.model_inputs import SLICES, VOLUMES, input_of_kind


@dataclass(frozen=True)
class SubjectFiles:
    """One subject's inputs: its slices and their geometry (slice models), its volume (3D models), its
    parcellation on the MNI grid (``None`` for the controls that only lend occlusion its neutral image)."""

    slices: Path | None
    geometry: Path | None
    dseg: Path | None
    volume: Path | None = None


# the job's input names (the workflow's, headmri.model_inputs ModelInput.files) -> SubjectFiles fields
FILE_FIELDS = {"slices": "slices", "slices_json": "geometry", "volumes": "volume"}


def subject_files(participants: Sequence[str], dseg: Sequence | None, inputs: Mapping[str, Sequence]) -> dict:
    """participant_id -> ``SubjectFiles`` from per-subject file lists named as the workflow names them
    (``slices``, ``slices_json``, ``volumes``: those the model takes; the others may be absent)."""
    n = len(participants)
    unknown = sorted(set(inputs) - set(FILE_FIELDS))
    if unknown:
        raise ValueError(f"unknown input names {unknown}; expected some of {sorted(FILE_FIELDS)}")
    columns = {field: list(inputs.get(name, [None] * n)) for name, field in FILE_FIELDS.items()}
    dsegs = list(dseg) if dseg is not None else [None] * n
    return {pid: SubjectFiles(dseg=dsegs[i], **{f: column[i] for f, column in columns.items()})
            for i, pid in enumerate(participants)}


@dataclass(frozen=True)
class ExplainedSubject:
    participant_id: str
    volume: np.ndarray  # 3D map on the MNI grid
    affine: np.ndarray
    slices: np.ndarray | None = None  # (n, S, S) inputs and maps, kept for the montage only
    maps: np.ndarray | None = None
    region_values: Mapping[int, float] | None = None  # region methods: the value of every region


@dataclass(frozen=True)
class SubjectRequest:
    """One subject to explain: its files, its parcellation (checked), the target class index, whether its
    input slices and maps are kept for the montage, and the scored region codes (region methods)."""

    participant_id: str
    files: SubjectFiles
    dseg: nib.Nifti1Image
    target: int
    keep_slices: bool
    codes: Sequence[int] = ()

    def labels(self) -> np.ndarray:
        return np.asarray(self.dseg.dataobj).astype(np.int32)


def read_geometry(path: Path | None, *, subject: str):
    from headmri.slices.reference import read_geometry as read

    if path is None:
        raise InputError("a slice model needs the subject's slices and their geometry JSON", subject=subject)
    return read(path, subject=subject)


@dataclass
class SliceFeed:
    """Slice models. ``neutral`` and ``like`` serve region methods that need a reference (occlusion): the
    neutral slices and the slicing every subject must share; ``reference``: the fold's control reference
    when the model was trained with one (``training.reference: controls``); the job sets them."""

    meta: Mapping[str, Any]
    device: torch.device
    neutral: np.ndarray | None = None
    like: Any = None
    reference: Any = None  # headmri.slices.reference.ControlReference
    spec = SLICES

    def check_grid(self, dseg: nib.Nifti1Image, files: SubjectFiles, subject: str) -> None:
        geometry = read_geometry(files.geometry, subject=subject)
        regional.check_same_grid(dseg, geometry.source_shape, geometry.affine, subject=subject, path=files.dseg,
                                 what=f"slice geometry's ({files.geometry})")

    def target_layer(self, configured: str | None, model: torch.nn.Module) -> str | None:
        """``explain.target_layer``, else the layer the model names."""
        return configured or self.meta.get("target_layer_name") or model.target_layer_name

    def _inputs(self, files: SubjectFiles, pid: str):
        from headmri.slices.loader import SliceBatchLoader

        if files.slices is None:
            raise InputError("a slice model needs the subject's slices", subject=pid)
        geometry = read_geometry(files.geometry, subject=pid)
        loader = SliceBatchLoader([files.slices], [0], batch_size=max(1, len(geometry.kept_indices)), shuffle=False,
                                  seed=0, device=self.device)
        raw = loader.arrays[0]
        if raw.shape[0] != geometry.n_kept:
            raise InputError(f"the slice array holds {raw.shape[0]} slices but its geometry keeps {geometry.n_kept}",
                             subject=pid, path=files.slices)
        size = int(self.meta["input_size"])
        if raw.shape[1:] != (size, size):
            raise InputError(f"slices are {raw.shape[1]}x{raw.shape[2]} but the model takes {size}x{size}; "
                             f"rebuild the slices at its size (sources[].size and slices.size null, or {size})", subject=pid, path=files.slices)
        grey = loader.to_grey(torch.from_numpy(np.array(raw)))  # a writable copy of the memory map
        if self.reference is not None:  # what the model was trained on: the difference from the controls' mean
            grey = self.reference.apply(grey, pid, geometry.kept_indices)
        return geometry, raw, grey

    def explain(self, explainer, request: SubjectRequest) -> Callable[[], ExplainedSubject]:
        pid, keep = request.participant_id, request.keep_slices
        geometry, raw, inputs = self._inputs(request.files, pid)
        shown = np.asarray(raw) if keep else None
        if not explainer.scores_regions:
            maps = explainer.slice_maps(inputs, request.target)
            return lambda: ExplainedSubject(pid, geometry.to_volume(maps), geometry.affine, shown, maps if keep else None)
        from headmri.explain.occlusion import SliceRegions, paint_regions
        from headmri.slices.reference import same_slicing

        if self.like is not None and not same_slicing(geometry, self.like):
            raise InputError("the patient's slices were not cut like the other subjects' (axis, size, grid)",
                             subject=pid, path=request.files.geometry)
        labels = request.labels()
        neutral = self.neutral[list(geometry.kept_indices)]
        if self.reference is not None:  # the neutral image is the controls' mean: no difference from it
            neutral = np.zeros_like(neutral)
        values = explainer.region_values(inputs, request.target, SliceRegions(geometry, labels, request.codes), neutral)

        def paint() -> ExplainedSubject:
            volume = paint_regions(labels, values)
            maps = geometry.slices_from_volume(volume) if keep else None
            return ExplainedSubject(pid, volume, geometry.affine, shown, maps, region_values=values)

        return paint


@dataclass
class VolumeFeed:
    """The 3D baseline: its MNI-space brain in, Grad-CAM upsampled to the parcellation's grid out."""

    meta: Mapping[str, Any]
    device: torch.device
    spec = VOLUMES

    def check_grid(self, dseg: nib.Nifti1Image, files: SubjectFiles, subject: str) -> None:
        if files.volume is None:
            raise InputError("a volume model needs the subject's MNI-space volume", subject=subject)
        try:
            source = nib.as_closest_canonical(nib.load(str(files.volume)))
        except (FileNotFoundError, nib.filebasedimages.ImageFileError) as error:
            raise InputError(f"cannot read the MNI-space brain: {error}", subject=subject, path=files.volume) from error
        regional.check_same_grid(dseg, source.shape, source.affine, subject=subject, path=files.dseg,
                                 what=f"brain volume's ({files.volume})")

    def target_layer(self, configured: str | None, model: torch.nn.Module) -> str | None:
        """Always the model's last convolutional stage (``explain.target_layer`` names a layer of the ViT)."""
        return self.meta.get("target_layer_name") or model.target_layer_name

    def explain(self, explainer, request: SubjectRequest) -> Callable[[], ExplainedSubject]:
        from headmri.training.volumes import load_volume  # the training stage owns the volume preprocessing

        pid, files = request.participant_id, request.files
        if files.volume is None:
            raise InputError("a volume model needs the subject's MNI-space volume", subject=pid)
        tensor = torch.as_tensor(load_volume(files.volume, self.meta, subject=pid))[None].to(self.device)
        volume = explainer.volume_map(tensor, request.target, request.dseg.shape)  # (1, 1, D, H, W) in
        slices = maps = None
        if request.keep_slices:  # sagittal planes of the brain and the map, shown the way the slice models see them
            brain = np.asarray(nib.as_closest_canonical(nib.load(str(files.volume))).dataobj, dtype=np.float32)
            keep = np.flatnonzero(brain.reshape(brain.shape[0], -1).any(axis=1))
            slices = np.stack([brain[i].T[::-1] for i in keep])
            maps = np.stack([volume[i].T[::-1] for i in keep])
        explained = ExplainedSubject(pid, volume, np.asarray(request.dseg.affine), slices, maps)
        return lambda: explained


FEEDS = {SLICES.kind: SliceFeed, VOLUMES.kind: VolumeFeed}


def feed_for(meta: Mapping[str, Any], device: torch.device) -> SliceFeed | VolumeFeed:
    """The feed of a trained model, from the input ``kind`` its metadata records (``slices`` when absent)."""
    return FEEDS[input_of_kind(meta.get("kind", SLICES.kind)).kind](meta, device)
