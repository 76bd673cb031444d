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
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import nibabel as nib
import numpy as np
import pandas as pd
import torch

from headmri import labels as label_tables
from headmri.atomic import save_nifti, write_json, write_tsv
from headmri.errors import ConfigError, InputError
from headmri.explain import methods
from headmri.explain import regions as regional
from headmri.explain.feeds import ExplainedSubject, SubjectFiles, SubjectRequest, feed_for, read_geometry
from headmri.explain.merge import REGION_COLUMNS
from headmri.explain.methods import target_index
from headmri.slices.reference import ControlReference
from headmri.splits import fold_table, read_split
from headmri.templates import SPACE

log = logging.getLogger(__name__)

PATIENT_SETS = ("test", "all")
MONTAGE_PATIENTS = 3


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


def neutral_slices(split: pd.DataFrame, fold: int, reference_class: str, controls: Mapping[str, SubjectFiles] | None,
                   like, *, path: str | Path | None = None) -> tuple[np.ndarray, list[str]]:
    """Occlusion's neutral image: the mean slices of the fold's training controls (reference class, split
    ``train``) at every slice position, and those controls' IDs. Validation and test controls never count."""
    from headmri.explain.occlusion import training_controls
    from headmri.slices.reference import control_mean_slices

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
    overlap: bool = True  # each subject's regional part on a background thread while the model explains the next


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


@dataclass(frozen=True)
class FoldKey:
    """Which fold is explained: the task, its classes (reference first) and the fold number."""

    task: str
    classes: tuple[str, ...]
    fold: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "fold", int(self.fold))


@dataclass
class _Explaining:
    """One explain job's state: the model and method, the subjects and their parcellations, the regions."""

    key: FoldKey
    settings: ExplainSettings
    device: torch.device
    model: torch.nn.Module
    meta: dict
    method_cls: type
    feed: Any  # headmri.explain.feeds: how this model's input kind is explained
    label_names: label_tables.LabelTable
    chosen: pd.DataFrame = None
    records: pd.DataFrame = None
    control_ids: list[str] = field(default_factory=list)
    files_of: dict[str, SubjectFiles] = field(default_factory=dict)
    parcellations: dict[str, nib.Nifti1Image] = field(default_factory=dict)
    expected: list[int] = field(default_factory=list)
    reference_controls: list[str] = field(default_factory=list)

    @property
    def layer_path(self) -> str | None:
        return self.feed.target_layer(self.settings.target_layer, self.model)

    @property
    def options(self) -> dict[str, Any]:
        return {"batch_size": self.settings.batch_size, **dict(self.settings.method_options or {})}

    def make_explainer(self, network: torch.nn.Module) -> methods.ExplanationMethod:
        layer = self.layer_path if self.method_cls.uses_target_layer else None
        return self.method_cls(network, target_layer=layer, **self.options)

    def start(self, explainer, pid: str, target_name: str, keep_slices: bool):
        """The model's part of one subject's explanation for one target class, on this thread; returns
        the rest (back to the MNI grid, value per expected region) as a function giving ``(explained, values)``."""
        request = SubjectRequest(pid, self.files_of[pid], self.parcellations[pid],
                                 target_index(self.key.classes, target_name), keep_slices, self.expected)
        finish = self.feed.explain(explainer, request)

        def regional_part() -> tuple[ExplainedSubject, np.ndarray]:
            explained = finish()
            if explained.region_values is not None:
                return explained, np.array([explained.region_values[c] for c in self.expected], dtype=np.float64)
            return explained, regional.regional_values(explained.volume, request.labels(), self.expected,
                                                       self.settings.statistic)

        return regional_part

    def explain_subject(self, explainer, pid: str, target_name: str, keep_slices: bool):
        """One subject's explanation and its value per expected region, all on this thread."""
        return self.start(explainer, pid, target_name, keep_slices)()


def explain_fold(inputs: FoldInputs, key: FoldKey, settings: ExplainSettings, outputs: FoldOutputs,
                 device: str | None = None) -> pd.DataFrame:
    """Explain one fold's model on its patients and write the fold's outputs; returns the regions table.

    ``inputs.subjects`` maps participant IDs (``sub-X``) to their files and must cover every selected
    patient. ``inputs.controls``: files of the task's reference-class subjects: slices and geometry for
    methods that need a neutral image (occlusion; the fold's training controls among them are used, and
    must be there), and with ``settings.explain_controls`` also the parcellation (and the volume for a 3D
    model) of the controls that are explained (``select_controls``: the same rule as the patients, once
    per disease class); their rows go to the same table (``group`` is the reference class, ``target`` the
    disease class), not into the mean map, the montage or the randomisation test. ``settings.sanity``: run
    the model-parameter randomisation test (headmri.explain.sanity) with these options (``patients``: how
    many of the explained patients, 0 for all; ``repeats``; ``threshold``; ``seed``) and record it in the
    JSON under ``sanity``; None: no test. ``settings.method_options``: keyword options of the method's class
    (occlusion: ``batch_size``, ``only_slices_with_region``); a ``batch_size`` there replaces
    ``settings.batch_size``. ``settings.target_layer`` defaults to the layer the model names (ViT:
    ``trunk.blocks[-1].norm1``; 3D CNN: always its last convolutional stage). ``inputs.expected_regions_tsv``:
    a table whose ``label`` column lists the regions each parcellation must hold; without it, every scored
    region any patient has (optional FreeSurfer labels aside). ``inputs.label_table``: the source's label
    table (``headmri.labels.load``: ``freesurfer`` or None for the built-in FreeSurfer table, else a TSV
    path), which names the regions and says which are scored. ``settings.overlap``: each subject's regional
    part (back to the MNI grid, regional statistics, its rows and its share of the mean map) runs on one
    background thread while the model explains the next subject; the outputs are those of the serial loop
    (``overlap=False``), which the tests compare.
    """
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
    if job.method_cls.needs_reference or _model_reference(job) == "controls":
        _set_reference(job, split, inputs)
    explained = _explain_records(job, explainer, outputs)
    sanity_record = _sanity_test(job, explained.patient_values)
    return _write_outputs(job, explained, sanity_record, outputs)


def _set_reference(job: _Explaining, split: pd.DataFrame, inputs: FoldInputs) -> None:
    """Occlusion's neutral image and the slicing every subject must share (the first patient's)."""
    first = job.chosen["participant_id"].iloc[0]
    job.feed.like = read_geometry(inputs.subjects[first].geometry, subject=first)
    job.feed.neutral, job.reference_controls = neutral_slices(split, job.key.fold, job.key.classes[0], inputs.controls,
                                                              job.feed.like, path=inputs.split_tsv)
    log.info("neutral image: the mean slices of %d training controls %s", len(job.reference_controls),
             job.reference_controls)
    if _model_reference(job) == "controls":
        trained_with = sorted(job.meta.get("reference_controls", []))
        if trained_with != sorted(job.reference_controls):
            raise InputError(f"the model was trained against the mean of the controls {trained_with}, but fold "
                             f"{job.key.fold} of the split has the training controls {job.reference_controls}",
                             path=inputs.model_path)
        job.feed.reference = ControlReference(job.feed.neutral, frozenset(job.reference_controls))
        log.info("control reference (training.reference: controls): every input is the slice minus that mean")


def _model_reference(job: _Explaining) -> str:
    """What the model was trained to see (``training.reference``; models trained before it: none)."""
    return str(job.meta.get("reference", "none"))


def _write_outputs(job: _Explaining, explained: _Explained, sanity_record: dict | None,
                   outputs: FoldOutputs) -> pd.DataFrame:
    """The regions table, the patients' mean map, the JSON and the montage, each written atomically."""
    result = pd.concat(explained.rows, ignore_index=True).loc[:, list(REGION_COLUMNS)]
    write_tsv(result, outputs.regions_tsv)
    mean = (explained.total / len(job.chosen)).astype(np.float32)
    save_nifti(nib.Nifti1Image(mean, explained.affine), outputs.mean_map)
    write_json(_summary(job, sanity_record), outputs.summary_json)
    if outputs.montage_png is not None:
        from headmri.explain.figures import montage_figure

        montage_figure([(s.participant_id, s.slices, s.maps) for s in explained.montage], outputs.montage_png,
                       title=f"task {job.key.task}, fold {job.key.fold}: {job.settings.method} for the disease class "
                             "(raw, common scale)")
    return result


def _load(inputs: FoldInputs, key: FoldKey, settings: ExplainSettings, device: torch.device) -> _Explaining:
    """The fold's model, checked against the task, the method for its input kind, and the label table."""
    model, meta = load_fold_model(inputs.model_path, task=key.task, fold=key.fold, device=device)
    if tuple(meta.get("classes", ())) != key.classes:
        raise InputError(f"the model was trained on classes {list(meta.get('classes', ()))}, but task {key.task} has "
                         f"{list(key.classes)}", path=inputs.model_path)
    feed = feed_for(meta, device)
    method_cls = methods.check_method(settings.method, feed.spec.kind)
    label_names = label_tables.load(None if inputs.label_table is None else str(inputs.label_table))
    return _Explaining(key, settings, device, model, meta, method_cls, feed, label_names)


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
        job.feed.check_grid(image, files, pid)
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


class _InOrder:
    """Runs functions one after another, in the order given, on one background thread (or at once on this
    thread when ``background`` is off), with at most ``depth`` waiting; an error is raised here, at the
    next ``submit`` or at the end. One worker and FIFO order: the results are those of the serial loop."""

    def __init__(self, background: bool, depth: int = 2):
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="explain-regions") if background else None
        self.depth, self.waiting = depth, deque()

    def submit(self, work: Callable[[], None]) -> None:
        if self.pool is None:
            work()
            return
        self.waiting.append(self.pool.submit(work))
        while len(self.waiting) > self.depth:
            self.waiting.popleft().result()

    def __enter__(self) -> "_InOrder":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if self.pool is None:
            return
        try:
            while self.waiting and kind is None:
                self.waiting.popleft().result()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _explain_records(job: _Explaining, explainer, outputs: FoldOutputs) -> _Explained:
    """Explain every selected subject for its target, one region row set each; patients also go into the
    mean map, the montage (the first few) and the randomisation test. The model's part runs here; the
    regional part of each subject (``_gather``) on a background thread while the next one's maps are
    made (``ExplainSettings.overlap``)."""
    gathered, montage_wanted = _Explained(), 0
    with _InOrder(job.settings.overlap) as regional_work:
        for i, record in enumerate(job.records.itertuples(index=False)):
            is_patient = record.role == "patient"
            keep = is_patient and outputs.montage_png is not None and montage_wanted < MONTAGE_PATIENTS
            montage_wanted += keep
            started = time.perf_counter()
            rest = job.start(explainer, record.participant_id, record.target, keep)
            model_seconds = time.perf_counter() - started
            note = f", {explainer.forward_passes} slices through the model" if hasattr(explainer, "forward_passes") else ""
            regional_work.submit(partial(_gather, job, gathered, record, rest, outputs,
                                         f"{i + 1}/{len(job.records)}", f"{model_seconds:.1f} s{note}"))
    return gathered


def _gather(job: _Explaining, gathered: _Explained, record, rest: Callable, outputs: FoldOutputs, position: str,
            timing: str) -> None:
    """One subject's regional part (``rest``) and its rows; a patient's map into the mean and the montage."""
    pid, is_patient = record.participant_id, record.role == "patient"
    started = time.perf_counter()
    explained, values = rest()
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
    log.info("  %s %s (%s%s): map max %.4g, model %s, regions %.1f s", position, pid, record.target,
             "" if is_patient else f", control of {record.group}", float(explained.volume.max()), timing,
             time.perf_counter() - started)


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
        return {pid: job.explain_subject(method_instance, pid, target_of[pid], False)[1] for pid in tested}

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
        "input_reference": _model_reference(job),  # training.reference: what the model saw
        **({"reference_controls": job.reference_controls} if job.reference_controls else {}),  # set with the mean
        "sanity": sanity_record,
    }
