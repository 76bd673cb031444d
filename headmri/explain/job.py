"""The ``explain_fold`` job: explain one fold's model on its patients, score every region, save the maps.

For each selected patient (default: the fold's held-out test patients of the disease classes), the
registered method (``explain.method``, ``headmri.explain.methods``) explains the trained model for the
patient's own disease class. A map method's map is put on the MNI grid, checked against the patient's
parcellation grid, and reduced to one value per region (max, as in the paper, or mean); a region method
(occlusion) gives one value per region directly, and its 3D map paints those values on the regions. The
fold's outputs: ``regions.tsv`` (one row per patient and region), the mean map over those patients
(NIfTI on the MNI grid), a JSON of what was done, a montage of a few patients' slices with their maps,
and optionally every patient's 3D map as NIfTI. Optionally (``explain.controls``) the fold's controls are
explained for the disease class too, for the patient-versus-control contrast (headmri.explain.merge),
and (``explain.sanity_check``) the model-parameter randomisation test (headmri.explain.sanity) is run
on a few of the patients and recorded in the JSON.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import nibabel as nib
import numpy as np
import pandas as pd
import torch

from headmri import labels as label_tables
from headmri.atomic import save_nifti, write_json, write_tsv
from headmri.errors import ConfigError, InputError
from headmri.explain import methods
from headmri.explain import regions as regional
from headmri.explain.merge import REGION_COLUMNS
from headmri.explain.methods import target_index
from headmri.model_inputs import input_of_kind
from headmri.splits import fold_table, read_split
from headmri.templates import SPACE

log = logging.getLogger(__name__)

PATIENT_SETS = ("test", "all")
MONTAGE_PATIENTS = 3


@dataclass(frozen=True)
class SubjectFiles:
    """One subject's inputs: its slices and their geometry (slice models), its volume (3D models), its
    parcellation on the MNI grid (``None`` for the controls that only lend occlusion its neutral image)."""

    slices: Path | None
    geometry: Path | None
    dseg: Path | None
    volume: Path | None = None


@dataclass(frozen=True)
class ExplainedSubject:
    participant_id: str
    volume: np.ndarray  # 3D map on the MNI grid
    affine: np.ndarray
    slices: np.ndarray | None = None  # (n, S, S) inputs and maps, kept for the montage only
    maps: np.ndarray | None = None
    region_values: Mapping[int, float] | None = None  # region methods: the value of every region


def load_fold_model(model_path: str | Path, *, task: str, fold: int, device: torch.device):
    """The trained model of one fold, or a clear error when that fold was never trained."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise InputError(
            f"task {task}, fold {fold} has no trained model: run the training stage first "
            "(snakemake ... all) or check that this fold finished training",
            path=model_path,
        )
    from headmri.training import load_trained  # the training stage owns the checkpoint format

    model, meta = load_trained(model_path, device=device)
    return model.eval(), dict(meta)


def _fold_rows(split: pd.DataFrame, fold: int, classes: Sequence[str], which: str, *,
               path: str | Path | None = None) -> pd.DataFrame:
    """The split rows of ``fold`` (only its test subjects with ``which`` test), each with its own class in
    ``target``, checked against the task's classes."""
    if which not in PATIENT_SETS:
        raise ConfigError(f"explain.patients must be one of {PATIENT_SETS}, got {which!r}")
    needed = {"participant_id", "group", "class_index", "fold", "split"}
    if not needed <= set(split.columns):
        raise InputError(f"the split table lacks columns {sorted(needed - set(split.columns))}", path=path)
    try:
        rows = fold_table(split, fold)
    except InputError as error:
        raise InputError(error.reason, path=path) from None
    index = rows["class_index"].astype(int)
    if ((index < 0) | (index >= len(classes))).any():
        raise InputError(f"the split has class indices outside 0..{len(classes) - 1} for classes {list(classes)}", path=path)
    rows = rows.assign(target=[classes[i] for i in index])
    mismatch = rows[rows["target"] != rows["group"]]
    if not mismatch.empty:
        first = mismatch.iloc[0]
        raise InputError(f"{first['participant_id']} is in group {first['group']!r} but has class index {first['class_index']} "
                         f"({first['target']!r}) for classes {list(classes)}: the split was made for another task", path=path)
    return rows[rows["split"] == "test"] if which == "test" else rows


def select_patients(split: pd.DataFrame, fold: int, classes: Sequence[str], which: str, *, path: str | Path | None = None) -> pd.DataFrame:
    """The split rows of the patients to explain in ``fold`` (its test patients, or all its patients of
    the disease classes ``classes[1:]``), with a ``target`` column: the patient's own class."""
    rows = _fold_rows(split, fold, classes, which, path=path)
    rows = rows[rows["target"].isin(classes[1:])]
    if rows.empty:
        raise InputError(f"fold {fold} has no {'test ' if which == 'test' else ''}patients of {list(classes[1:])} to explain", path=path)
    return rows.sort_values("participant_id").reset_index(drop=True)


def select_controls(split: pd.DataFrame, fold: int, classes: Sequence[str], which: str, *, path: str | Path | None = None) -> pd.DataFrame:
    """The split rows of the controls to explain in ``fold`` by the same rule as the patients (its test
    subjects of the reference class ``classes[0]``, or all of them), once per disease class: ``target``
    is the disease class each is explained for (the patient-versus-control contrast compares them with
    that class's patients)."""
    rows = _fold_rows(split, fold, classes, which, path=path)
    rows = rows[rows["target"] == classes[0]].sort_values("participant_id")
    if rows.empty:
        raise InputError(f"fold {fold} has no {'test ' if which == 'test' else ''}controls of {classes[0]!r} to explain "
                         "(explain.controls, or explain.ranking: contrast)", path=path)
    return pd.concat([rows.assign(target=disease) for disease in classes[1:]], ignore_index=True)


def load_parcellation(path: Path, *, subject: str) -> nib.Nifti1Image:
    try:
        image = nib.load(str(path))
    except (FileNotFoundError, nib.filebasedimages.ImageFileError) as error:
        raise InputError(f"cannot read the parcellation: {error}", subject=subject, path=path) from error
    return nib.as_closest_canonical(image)  # slice geometries are in canonical RAS


def read_geometry(path: Path | None, *, subject: str):
    from headmri.slices.geometry import SliceGeometry

    if path is None:
        raise InputError("a slice model needs the subject's slices and their geometry JSON", subject=subject)
    try:
        return SliceGeometry.from_json(path)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"cannot read the slice geometry: {error}", subject=subject, path=path) from error


def check_input_grid(dseg: nib.Nifti1Image, files: SubjectFiles, subject: str, kind: str) -> None:
    """The parcellation must lie on the grid the model's input came from (header reads only)."""
    if kind == "volume":
        if files.volume is None:
            raise InputError("a volume model needs the subject's MNI-space volume", subject=subject)
        try:
            source = nib.as_closest_canonical(nib.load(str(files.volume)))
        except (FileNotFoundError, nib.filebasedimages.ImageFileError) as error:
            raise InputError(f"cannot read the MNI-space brain: {error}", subject=subject, path=files.volume) from error
        regional.check_same_grid(dseg, source.shape, source.affine, subject=subject, path=files.dseg,
                                 what=f"brain volume's ({files.volume})")
    else:
        geometry = read_geometry(files.geometry, subject=subject)
        regional.check_same_grid(dseg, geometry.source_shape, geometry.affine, subject=subject, path=files.dseg,
                                 what=f"slice geometry's ({files.geometry})")


def neutral_slices(split: pd.DataFrame, fold: int, reference_class: str, controls: Mapping[str, SubjectFiles] | None,
                   like, *, path: str | Path | None = None) -> tuple[np.ndarray, list[str]]:
    """Occlusion's neutral image: the mean slices of the fold's training controls (reference class, split
    ``train``) at every slice position, and those controls' IDs. Validation and test controls never count."""
    from headmri.explain.occlusion import control_mean_slices, training_controls

    chosen = training_controls(fold_table(split, fold), reference_class)
    if not chosen:
        raise InputError(f"fold {fold} has no training subject of the reference class {reference_class!r} for the "
                         "occlusion's neutral image", path=path)
    missing = sorted(set(chosen) - set(controls or {}))
    if missing:
        raise InputError(f"no slice files given for the training controls {missing[:10]} of fold {fold} "
                         "(region occlusion needs them for its neutral image)", path=path)
    for pid in chosen:
        if controls[pid].slices is None or controls[pid].geometry is None:
            raise InputError("region occlusion needs the control's slices and their geometry JSON", subject=pid)
    return control_mean_slices({pid: (controls[pid].slices, controls[pid].geometry) for pid in chosen}, like), chosen


def _slice_subject(model, meta, files: SubjectFiles, participant_id: str, *, explainer: methods.ExplanationMethod,
                   target: int, device: torch.device, keep_slices: bool, labels: np.ndarray | None = None,
                   codes: Sequence[int] = (), neutral: np.ndarray | None = None,
                   like=None) -> ExplainedSubject:
    from headmri.slices.loader import SliceBatchLoader

    if files.slices is None:
        raise InputError("a slice model needs the subject's slices", subject=participant_id)
    geometry = read_geometry(files.geometry, subject=participant_id)
    loader = SliceBatchLoader([files.slices], [0], batch_size=max(1, len(geometry.kept_indices)), shuffle=False, seed=0,
                              device=device)
    raw = loader.arrays[0]
    if raw.shape[0] != geometry.n_kept:
        raise InputError(f"the slice array holds {raw.shape[0]} slices but its geometry keeps {geometry.n_kept}",
                         subject=participant_id, path=files.slices)
    size = int(meta["input_size"])
    if raw.shape[1:] != (size, size):
        raise InputError(f"slices are {raw.shape[1]}x{raw.shape[2]} but the model takes {size}x{size}; "
                         f"rebuild the slices with slices.size: {size}", subject=participant_id, path=files.slices)
    inputs = loader.to_grey(torch.from_numpy(np.array(raw)))  # a writable copy of the memory map
    if not explainer.scores_regions:
        maps = explainer.slice_maps(inputs, target)
        volume = geometry.to_volume(maps)
        return ExplainedSubject(participant_id, volume, geometry.affine,
                                np.asarray(raw) if keep_slices else None, maps if keep_slices else None)
    from headmri.explain.occlusion import SliceRegions, paint_regions, same_slicing

    if like is not None and not same_slicing(geometry, like):
        raise InputError("the patient's slices were not cut like the other subjects' (axis, size, grid)",
                         subject=participant_id, path=files.geometry)
    values = explainer.region_values(inputs, target, SliceRegions(geometry, labels, codes),
                                     neutral[list(geometry.kept_indices)])
    volume = paint_regions(labels, values)
    maps = geometry.slices_from_volume(volume) if keep_slices else None
    return ExplainedSubject(participant_id, volume, geometry.affine, np.asarray(raw) if keep_slices else None, maps,
                            region_values=values)


def _volume_subject(model, meta, files: SubjectFiles, participant_id: str, *, explainer, target: int,
                    device: torch.device, grid_shape: Sequence[int], grid_affine: np.ndarray,
                    keep_slices: bool) -> ExplainedSubject:
    from headmri.training.volumes import load_volume  # the training stage owns the volume preprocessing

    if files.volume is None:
        raise InputError("a volume model needs the subject's MNI-space volume", subject=participant_id)
    tensor = torch.as_tensor(load_volume(files.volume, meta, subject=participant_id))[None].to(device)  # (1, 1, D, H, W)
    volume = explainer.volume_map(tensor, target, grid_shape)
    slices = maps = None
    if keep_slices:  # sagittal planes of the brain and the map, shown the way the slice models see them
        brain = np.asarray(nib.as_closest_canonical(nib.load(str(files.volume))).dataobj, dtype=np.float32)
        keep = np.flatnonzero(brain.reshape(brain.shape[0], -1).any(axis=1))
        slices = np.stack([brain[i].T[::-1] for i in keep])
        maps = np.stack([volume[i].T[::-1] for i in keep])
    return ExplainedSubject(participant_id, volume, np.asarray(grid_affine), slices, maps)


@dataclass(frozen=True)
class ExplainSettings:
    """How a fold is explained (the ``explain`` config keys of the same names; ``explain_fold``'s docstring)."""

    method: str = "gradcam"
    target_layer: str | None = None
    statistic: str = "max"
    patients: str = "test"
    batch_size: int = 32
    method_options: Mapping[str, Any] | None = None
    explain_controls: bool = False
    sanity: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class FoldInputs:
    """What one explain job reads: the fold's model and split, the subjects' files, the source's regions."""

    model_path: str | Path
    split_tsv: str | Path
    subjects: Mapping[str, SubjectFiles]
    controls: Mapping[str, SubjectFiles] | None = None
    expected_regions_tsv: str | Path | None = None
    label_table: str | Path | None = None


@dataclass(frozen=True)
class FoldOutputs:
    regions_tsv: str | Path
    mean_map: str | Path
    summary_json: str | Path
    montage_png: str | Path | None = None
    maps_dir: str | Path | None = None


def explain_fold(
    *,
    model_path: str | Path,
    split_tsv: str | Path,
    task: str,
    classes: Sequence[str],
    fold: int,
    subjects: Mapping[str, SubjectFiles],
    regions_tsv: str | Path,
    mean_map: str | Path,
    summary_json: str | Path,
    montage_png: str | Path | None = None,
    maps_dir: str | Path | None = None,
    method: str = "gradcam",
    target_layer: str | None = None,
    statistic: str = "max",
    patients: str = "test",
    expected_regions_tsv: str | Path | None = None,
    batch_size: int = 32,
    device: str | None = None,
    controls: Mapping[str, SubjectFiles] | None = None,
    method_options: Mapping[str, Any] | None = None,
    explain_controls: bool = False,
    sanity: Mapping[str, Any] | None = None,
    label_table: str | Path | None = None,
) -> pd.DataFrame:
    """Explain one fold's model on its patients and write the fold's outputs; returns the regions table.

    ``subjects`` maps participant IDs (``sub-X``) to their files and must cover every selected patient.
    ``controls``: files of the task's reference-class subjects: slices and geometry for methods that need a
    neutral image (occlusion; the fold's training controls among them are used, and must be there), and
    with ``explain_controls`` also the parcellation (and the volume for a 3D model) of the controls that are
    explained. ``explain_controls``: also explain the fold's controls (``select_controls``: the same rule as
    the patients) for each disease class; their rows go to the same table (``group`` is the reference
    class, ``target`` the disease class), not into the mean map, the montage or the randomisation test.
    ``sanity``: run the model-parameter randomisation test (headmri.explain.sanity) with these options
    (``patients``: how many of the explained patients, 0 for all; ``repeats``; ``threshold``; ``seed``) and
    record it in the JSON under ``sanity``; None: no test.
    ``method_options``: keyword options of the method's class (occlusion: ``batch_size``,
    ``only_slices_with_region``); a ``batch_size`` there replaces ``batch_size``.
    ``target_layer`` defaults to the layer the model names (ViT: ``trunk.blocks[-1].norm1``; 3D CNN: its
    last convolutional stage). ``expected_regions_tsv``: a table whose ``label`` column lists the regions
    each parcellation must hold; without it, every scored region any patient has (optional FreeSurfer
    labels aside). ``label_table``: the source's label table (``headmri.labels.load``: ``freesurfer`` or None for
    the built-in FreeSurfer table, else a TSV path), which names the regions and says which are scored.
    The keywords are grouped into ``FoldInputs``, ``ExplainSettings`` and ``FoldOutputs`` and the work
    done by ``run_explain``.
    """
    inputs = FoldInputs(model_path, split_tsv, subjects, controls, expected_regions_tsv, label_table)
    settings = ExplainSettings(method, target_layer, statistic, patients, batch_size, method_options,
                               explain_controls, sanity)
    outputs = FoldOutputs(regions_tsv, mean_map, summary_json, montage_png, maps_dir)
    return run_explain(inputs, FoldKey(task, tuple(classes), int(fold)), settings, outputs, device)


@dataclass(frozen=True)
class FoldKey:
    task: str
    classes: tuple[str, ...]
    fold: int


@dataclass
class _Explaining:
    """One explain job's state: the model and method, the subjects and their parcellations, the regions."""

    key: FoldKey
    settings: ExplainSettings
    device: torch.device
    model: torch.nn.Module
    meta: dict
    method_cls: type
    layer_path: str | None
    label_names: label_tables.LabelTable
    chosen: pd.DataFrame = None
    records: pd.DataFrame = None
    control_ids: list[str] = field(default_factory=list)
    files_of: dict[str, SubjectFiles] = field(default_factory=dict)
    parcellations: dict[str, nib.Nifti1Image] = field(default_factory=dict)
    expected: list[int] = field(default_factory=list)
    neutral: np.ndarray | None = None
    like: Any = None
    reference_controls: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.meta.get("kind", "slices")

    @property
    def options(self) -> dict[str, Any]:
        return {"batch_size": self.settings.batch_size, **dict(self.settings.method_options or {})}

    def make_explainer(self, network: torch.nn.Module) -> methods.ExplanationMethod:
        layer = self.layer_path if self.method_cls.uses_target_layer else None
        return self.method_cls(network, target_layer=layer, **self.options)

    def explain_subject(self, method_instance, network, pid: str, target_name: str, keep_slices: bool):
        """One subject's explanation for one target class and its value per expected region."""
        files, dseg = self.files_of[pid], self.parcellations[pid]
        labels = np.asarray(dseg.dataobj).astype(np.int32)
        target = target_index(self.key.classes, target_name)
        if input_of_kind(self.kind).is_volume:
            explained = _volume_subject(network, self.meta, files, pid, explainer=method_instance, target=target,
                                        device=self.device, grid_shape=dseg.shape, grid_affine=dseg.affine,
                                        keep_slices=keep_slices)
        else:
            explained = _slice_subject(network, self.meta, files, pid, explainer=method_instance, target=target,
                                       device=self.device, keep_slices=keep_slices, labels=labels, codes=self.expected,
                                       neutral=self.neutral, like=self.like)
        if explained.region_values is not None:
            values = np.array([explained.region_values[c] for c in self.expected], dtype=np.float64)
        else:
            values = regional.regional_values(explained.volume, labels, self.expected, self.settings.statistic)
        return explained, values


def run_explain(inputs: FoldInputs, key: FoldKey, settings: ExplainSettings, outputs: FoldOutputs,
                device: str | None = None) -> pd.DataFrame:
    """``explain_fold`` on typed arguments."""
    if settings.statistic not in regional.STATISTICS:
        raise ConfigError(f"explain.region_statistic must be one of {regional.STATISTICS}, got {settings.statistic!r}")
    job = _load(inputs, key, settings, torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")))
    split = read_split(inputs.split_tsv)
    _select(job, split, inputs)
    log.info("task %s fold %d: explaining %d patients%s with %s on %s (%s, %s)", key.task, key.fold, len(job.chosen),
             f" and {len(job.control_ids)} controls (for {list(key.classes[1:])})" if job.control_ids else "",
             settings.method, job.layer_path if job.method_cls.uses_target_layer else "-", job.device,
             "value per region" if job.method_cls.scores_regions else settings.statistic)
    _check_parcellations(job, inputs.expected_regions_tsv)  # cheap: every grid and region set before the costly part
    explainer = job.make_explainer(job.model)
    if job.method_cls.needs_reference:
        first = job.chosen["participant_id"].iloc[0]
        job.like = read_geometry(inputs.subjects[first].geometry, subject=first)
        job.neutral, job.reference_controls = neutral_slices(split, key.fold, key.classes[0], inputs.controls, job.like,
                                                             path=inputs.split_tsv)
        log.info("neutral image: the mean slices of %d training controls %s", len(job.reference_controls),
                 job.reference_controls)
    explained = _explain_records(job, explainer, outputs)
    sanity_record = _sanity_test(job, explained.patient_values)
    result = pd.concat(explained.rows, ignore_index=True).loc[:, list(REGION_COLUMNS)]
    write_tsv(result, outputs.regions_tsv)
    mean = (explained.total / len(job.chosen)).astype(np.float32)
    save_nifti(nib.Nifti1Image(mean, explained.affine), outputs.mean_map)
    write_json(_summary(job, sanity_record), outputs.summary_json)
    if outputs.montage_png is not None:
        from headmri.explain.figures import montage_figure

        montage_figure([(s.participant_id, s.slices, s.maps) for s in explained.montage], outputs.montage_png,
                       title=f"task {key.task}, fold {key.fold}: {settings.method} for the disease class (raw, common scale)")
    return result


def _load(inputs: FoldInputs, key: FoldKey, settings: ExplainSettings, device: torch.device) -> _Explaining:
    """The fold's model, checked against the task, the method for its input kind, and the target layer."""
    model, meta = load_fold_model(inputs.model_path, task=key.task, fold=key.fold, device=device)
    if tuple(meta.get("classes", ())) != key.classes:
        raise InputError(f"the model was trained on classes {list(meta.get('classes', ()))}, but task {key.task} has "
                         f"{list(key.classes)}", path=inputs.model_path)
    kind = meta.get("kind", "slices")
    method_cls = methods.check_method(settings.method, kind)
    # explain.target_layer names a layer of the ViT; the 3D baseline always uses its last convolutional stage
    if input_of_kind(kind).is_volume:
        layer_path = meta.get("target_layer_name") or model.target_layer_name
    else:
        layer_path = settings.target_layer or meta.get("target_layer_name") or model.target_layer_name
    label_names = label_tables.load(None if inputs.label_table is None else str(inputs.label_table))
    return _Explaining(key, settings, device, model, meta, method_cls, layer_path, label_names)


def _select(job: _Explaining, split: pd.DataFrame, inputs: FoldInputs) -> None:
    """The patients (and with ``explain_controls`` the controls) to explain, each with its files."""
    key, path = job.key, inputs.split_tsv
    job.chosen = select_patients(split, key.fold, key.classes, job.settings.patients, path=path)
    missing = sorted(set(job.chosen["participant_id"]) - set(inputs.subjects))
    if missing:
        raise InputError(f"no input files given for patients {missing[:10]} of fold {key.fold}", path=path)
    job.files_of = {pid: inputs.subjects[pid] for pid in job.chosen["participant_id"]}
    job.records = job.chosen.assign(role="patient")
    if not job.settings.explain_controls:
        return
    chosen_controls = select_controls(split, key.fold, key.classes, job.settings.patients, path=path)
    job.control_ids = list(dict.fromkeys(chosen_controls["participant_id"]))
    missing = sorted(set(job.control_ids) - set(inputs.controls or {}))
    if missing:
        raise InputError(f"no input files given for controls {missing[:10]} of fold {key.fold} (explain.controls)", path=path)
    for pid in job.control_ids:
        if inputs.controls[pid].dseg is None:
            raise InputError("explaining a control needs its parcellation", subject=pid)
        job.files_of[pid] = inputs.controls[pid]
    job.records = pd.concat([job.records, chosen_controls.assign(role="control")], ignore_index=True)


def _check_parcellations(job: _Explaining, expected_regions_tsv: str | Path | None) -> None:
    """Every subject's parcellation on the model input's grid and on one grid for all (or the mean map
    would mix grids), and holding every expected region of the source's label table."""
    codes_of: dict[str, np.ndarray] = {}
    for pid, files in job.files_of.items():
        image = load_parcellation(files.dseg, subject=pid)
        check_input_grid(image, files, pid, input_of_kind(job.kind).kind)
        if job.parcellations:
            first_pid, first = next(iter(job.parcellations.items()))
            regional.check_same_grid(image, first.shape, first.affine, subject=pid, path=files.dseg,
                                     what=f"first patient's ({first_pid}) parcellation")
        job.parcellations[pid] = image
        codes_of[pid] = regional.present_codes(np.asarray(image.dataobj))
    if expected_regions_tsv is not None:
        job.expected = regional.expected_codes_from_table(expected_regions_tsv, job.label_names)
    else:
        job.expected = regional.expected_codes_from_subjects(codes_of.values(), job.label_names)
    for pid, codes in codes_of.items():
        regional.check_codes(codes, job.expected, subject=pid, path=job.files_of[pid].dseg, labels=job.label_names)


@dataclass
class _Explained:
    """What the loop over subjects gathers: region rows, the patients' summed map and values, the montage."""

    rows: list[pd.DataFrame] = field(default_factory=list)
    total: np.ndarray | None = None
    affine: np.ndarray | None = None
    montage: list[ExplainedSubject] = field(default_factory=list)
    patient_values: dict[str, np.ndarray] = field(default_factory=dict)


def _explain_records(job: _Explaining, explainer, outputs: FoldOutputs) -> _Explained:
    """Explain every selected subject for its target, one region row set each; patients also go into the
    mean map, the montage (the first few) and the randomisation test."""
    gathered = _Explained()
    for i, record in enumerate(job.records.itertuples(index=False)):
        pid, is_patient = record.participant_id, record.role == "patient"
        want_montage = outputs.montage_png is not None and len(gathered.montage) < MONTAGE_PATIENTS
        started = time.perf_counter()
        explained, values = job.explain_subject(explainer, job.model, pid, record.target, is_patient and want_montage)
        seconds = time.perf_counter() - started
        table = regional.region_rows(values, job.expected, job.label_names)
        for column, value in (("target", record.target), ("split", record.split), ("group", record.group),
                              ("participant_id", pid)):
            table.insert(0, column, value)
        gathered.rows.append(table)
        affine = job.parcellations[pid].affine
        if is_patient:
            gathered.patient_values[pid] = values
            if gathered.total is None:
                gathered.total = explained.volume.astype(np.float64)
            else:
                gathered.total += explained.volume  # in place: no new 58 MB array per patient on the MNI grid
            gathered.affine = affine if gathered.affine is None else gathered.affine
        if outputs.maps_dir is not None:
            _save_map(explained, affine, outputs.maps_dir, job.settings.method, pid, None if is_patient else record.target)
        if explained.maps is not None:
            gathered.montage.append(explained)
        log.info("  %d/%d %s (%s%s): map max %.4g, %.1f s%s", i + 1, len(job.records), pid, record.target,
                 "" if is_patient else f", control of {record.group}", float(explained.volume.max()), seconds,
                 f", {explainer.forward_passes} slices through the model" if hasattr(explainer, "forward_passes") else "")
    return gathered


def _save_map(explained: ExplainedSubject, affine: np.ndarray, maps_dir: str | Path, method: str, pid: str,
              control_target: str | None) -> None:
    target = "" if control_target is None else f"_target-{control_target}"
    name = f"{pid}{target}_space-{SPACE}_desc-{method}_map.nii.gz"
    save_nifti(nib.Nifti1Image(explained.volume.astype(np.float32), affine), Path(maps_dir) / name)


def _sanity_test(job: _Explaining, patient_values: Mapping[str, np.ndarray]) -> dict | None:
    """The model-parameter randomisation test on the first ``sanity.patients`` patients (None: not asked)."""
    sanity = job.settings.sanity
    if sanity is None:
        return None
    from headmri.explain import sanity as randomisation

    wanted = int(sanity.get("patients", 0))
    tested = list(job.chosen["participant_id"])[: wanted or None]
    target_of = dict(zip(job.chosen["participant_id"], job.chosen["target"]))

    def score(network: torch.nn.Module) -> dict[str, np.ndarray]:
        method_instance = job.make_explainer(network)
        return {pid: job.explain_subject(method_instance, network, pid, target_of[pid], False)[1] for pid in tested}

    return randomisation.randomisation_test(
        job.model, score, seed=int(sanity.get("seed", 0)), repeats=int(sanity.get("repeats", randomisation.DEFAULT_REPEATS)),
        threshold=float(sanity.get("threshold", randomisation.DEFAULT_THRESHOLD)),
        trained={pid: patient_values[pid] for pid in tested})


def _summary(job: _Explaining, sanity_record: dict | None) -> dict:
    """The fold's explain.json: what was explained, how, and the randomisation test."""
    key, settings, by_region = job.key, job.settings, job.method_cls.scores_regions
    return {
        "task": key.task, "fold": key.fold, "classes": list(key.classes), "encoder": job.meta.get("encoder"),
        "method": settings.method, "class_specific": bool(job.method_cls.class_specific),
        "target_layer": job.layer_path if job.method_cls.uses_target_layer else None,
        "targets": sorted(set(job.chosen["target"])), "region_statistic": None if by_region else settings.statistic,
        "patients": settings.patients, "participants": list(job.chosen["participant_id"]),
        "controls": job.control_ids, "n_regions": len(job.expected),
        "device": str(job.device),
        "map_scaling": ("value per region: drop in the subject-level target probability when the region is "
                        "replaced by the training controls' mean slices; the 3D maps paint it on the region")
        if by_region else "raw (no per-slice min-max)",
        "method_options": {k: v for k, v in job.options.items()},
        **({"reference_controls": job.reference_controls} if job.method_cls.needs_reference else {}),
        "sanity": sanity_record,
    }
