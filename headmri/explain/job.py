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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import nibabel as nib
import numpy as np
import pandas as pd
import torch

from headmri.atomic import save_nifti, write_json, write_tsv
from headmri.errors import ConfigError, InputError
from headmri.explain import methods
from headmri.explain import regions as regional
from headmri.explain.methods import target_index
from headmri.explain.merge import REGION_COLUMNS
from headmri.splits import fold_table, read_split

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
    labels aside).
    """
    if statistic not in regional.STATISTICS:
        raise ConfigError(f"explain.region_statistic must be one of {regional.STATISTICS}, got {statistic!r}")
    classes = tuple(classes)
    torch_device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, meta = load_fold_model(model_path, task=task, fold=fold, device=torch_device)
    if tuple(meta.get("classes", ())) != classes:
        raise InputError(f"the model was trained on classes {list(meta.get('classes', ()))}, but task {task} has {list(classes)}",
                         path=model_path)
    kind = meta.get("kind", "slices")
    method_cls = methods.check_method(method, kind)
    by_region = method_cls.scores_regions
    # explain.target_layer names a layer of the ViT; the 3D baseline always uses its last convolutional stage
    if kind == "volume":
        layer_path = meta.get("target_layer_name") or model.target_layer_name
    else:
        layer_path = target_layer or meta.get("target_layer_name") or model.target_layer_name
    split = read_split(split_tsv)
    chosen = select_patients(split, fold, classes, patients, path=split_tsv)
    missing = sorted(set(chosen["participant_id"]) - set(subjects))
    if missing:
        raise InputError(f"no input files given for patients {missing[:10]} of fold {fold}", path=split_tsv)
    files_of: dict[str, SubjectFiles] = {pid: subjects[pid] for pid in chosen["participant_id"]}
    records = chosen.assign(role="patient")
    control_ids: list[str] = []
    if explain_controls:
        chosen_controls = select_controls(split, fold, classes, patients, path=split_tsv)
        control_ids = list(dict.fromkeys(chosen_controls["participant_id"]))
        missing = sorted(set(control_ids) - set(controls or {}))
        if missing:
            raise InputError(f"no input files given for controls {missing[:10]} of fold {fold} (explain.controls)", path=split_tsv)
        for pid in control_ids:
            if controls[pid].dseg is None:
                raise InputError("explaining a control needs its parcellation", subject=pid)
            files_of[pid] = controls[pid]
        records = pd.concat([records, chosen_controls.assign(role="control")], ignore_index=True)
    log.info("task %s fold %d: explaining %d patients%s with %s on %s (%s, %s)", task, fold, len(chosen),
             f" and {len(control_ids)} controls (for {list(classes[1:])})" if control_ids else "", method,
             layer_path if method_cls.uses_target_layer else "-", torch_device,
             "value per region" if by_region else statistic)

    # Parcellations and grids first (cheap): every grid and region set is checked before the expensive part.
    parcellations: dict[str, nib.Nifti1Image] = {}
    codes_of: dict[str, np.ndarray] = {}
    for pid, files in files_of.items():
        image = load_parcellation(files.dseg, subject=pid)
        check_input_grid(image, files, pid, kind)
        if parcellations:  # one grid for every subject, or the mean map would mix grids
            first = next(iter(parcellations.values()))
            regional.check_same_grid(image, first.shape, first.affine, subject=pid, path=files.dseg,
                                     what=f"first patient's ({next(iter(parcellations))}) parcellation")
        parcellations[pid] = image
        codes_of[pid] = regional.present_codes(np.asarray(image.dataobj))
    if expected_regions_tsv is not None:
        expected = regional.expected_codes_from_table(expected_regions_tsv)
    else:
        expected = regional.expected_codes_from_subjects(codes_of.values())
    for pid, codes in codes_of.items():
        regional.check_codes(codes, expected, subject=pid, path=files_of[pid].dseg)

    options = {"batch_size": batch_size, **dict(method_options or {})}

    def make_explainer(network: torch.nn.Module) -> methods.ExplanationMethod:
        return method_cls(network, target_layer=layer_path if method_cls.uses_target_layer else None, **options)

    explainer = make_explainer(model)
    neutral = like = None
    reference_controls: list[str] = []
    if method_cls.needs_reference:
        like = read_geometry(subjects[chosen["participant_id"].iloc[0]].geometry, subject=chosen["participant_id"].iloc[0])
        neutral, reference_controls = neutral_slices(split, fold, classes[0], controls, like, path=split_tsv)
        log.info("neutral image: the mean slices of %d training controls %s", len(reference_controls), reference_controls)

    def explain_subject(method_instance, network, pid: str, target_name: str, keep_slices: bool):
        """One subject's explanation for one target class and its value per expected region."""
        files = files_of[pid]
        dseg = parcellations[pid]
        labels = np.asarray(dseg.dataobj).astype(np.int32)
        target = target_index(classes, target_name)
        if kind == "volume":
            explained = _volume_subject(network, meta, files, pid, explainer=method_instance, target=target,
                                        device=torch_device, grid_shape=dseg.shape, grid_affine=dseg.affine,
                                        keep_slices=keep_slices)
        else:
            explained = _slice_subject(network, meta, files, pid, explainer=method_instance, target=target,
                                       device=torch_device, keep_slices=keep_slices, labels=labels, codes=expected,
                                       neutral=neutral, like=like)
        if explained.region_values is not None:
            values = np.array([explained.region_values[c] for c in expected], dtype=np.float64)
        else:
            values = regional.regional_values(explained.volume, labels, expected, statistic)
        return explained, values

    rows: list[pd.DataFrame] = []
    total: np.ndarray | None = None
    reference_affine: np.ndarray | None = None
    montage_subjects: list[ExplainedSubject] = []
    patient_values: dict[str, np.ndarray] = {}

    def want_montage() -> bool:
        return montage_png is not None and len(montage_subjects) < MONTAGE_PATIENTS

    for i, record in enumerate(records.itertuples(index=False)):
        pid = record.participant_id
        is_patient = record.role == "patient"
        started = time.perf_counter()
        explained, values = explain_subject(explainer, model, pid, record.target, is_patient and want_montage())
        seconds = time.perf_counter() - started
        table = regional.region_rows(values, expected)
        table.insert(0, "target", record.target)
        table.insert(0, "split", record.split)
        table.insert(0, "group", record.group)
        table.insert(0, "participant_id", pid)
        rows.append(table)
        affine = parcellations[pid].affine
        if is_patient:
            patient_values[pid] = values
            if total is None:
                total = explained.volume.astype(np.float64)
            else:
                total += explained.volume  # in place: no new 58 MB array per patient on the MNI grid
            reference_affine = affine if reference_affine is None else reference_affine
        if maps_dir is not None:
            name = f"{pid}_space-MNI152NLin6Asym_desc-{method}_map.nii.gz" if is_patient else \
                f"{pid}_target-{record.target}_space-MNI152NLin6Asym_desc-{method}_map.nii.gz"
            save_nifti(nib.Nifti1Image(explained.volume.astype(np.float32), affine), Path(maps_dir) / name)
        if explained.maps is not None:
            montage_subjects.append(explained)
        log.info("  %d/%d %s (%s%s): map max %.4g, %.1f s%s", i + 1, len(records), pid, record.target,
                 "" if is_patient else f", control of {record.group}", float(explained.volume.max()), seconds,
                 f", {explainer.forward_passes} slices through the model" if hasattr(explainer, "forward_passes") else "")

    sanity_record = None
    if sanity is not None:
        from headmri.explain import sanity as randomisation

        wanted = int(sanity.get("patients", 0))
        tested = list(chosen["participant_id"])[: wanted or None]
        target_of = dict(zip(chosen["participant_id"], chosen["target"]))

        def score(network: torch.nn.Module) -> dict[str, np.ndarray]:
            method_instance = make_explainer(network)
            return {pid: explain_subject(method_instance, network, pid, target_of[pid], False)[1] for pid in tested}

        sanity_record = randomisation.randomisation_test(
            model, score, seed=int(sanity.get("seed", 0)), repeats=int(sanity.get("repeats", randomisation.DEFAULT_REPEATS)),
            threshold=float(sanity.get("threshold", randomisation.DEFAULT_THRESHOLD)),
            trained={pid: patient_values[pid] for pid in tested})

    result = pd.concat(rows, ignore_index=True).loc[:, list(REGION_COLUMNS)]
    write_tsv(result, regions_tsv)
    mean = (total / len(chosen)).astype(np.float32)
    save_nifti(nib.Nifti1Image(mean, reference_affine), mean_map)
    write_json(
        {
            "task": task, "fold": int(fold), "classes": list(classes), "encoder": meta.get("encoder"),
            "method": method, "class_specific": bool(method_cls.class_specific),
            "target_layer": layer_path if method_cls.uses_target_layer else None,
            "targets": sorted(set(chosen["target"])), "region_statistic": None if by_region else statistic,
            "patients": patients, "participants": list(chosen["participant_id"]),
            "controls": control_ids, "n_regions": len(expected),
            "device": str(torch_device),
            "map_scaling": ("value per region: drop in the subject-level target probability when the region is "
                            "replaced by the training controls' mean slices; the 3D maps paint it on the region")
            if by_region else "raw (no per-slice min-max)",
            "method_options": {k: v for k, v in options.items()},
            **({"reference_controls": reference_controls} if method_cls.needs_reference else {}),
            "sanity": sanity_record,
        },
        summary_json,
    )
    if montage_png is not None:
        from headmri.explain.figures import montage_figure

        montage_figure([(s.participant_id, s.slices, s.maps) for s in montage_subjects], montage_png,
                       title=f"task {task}, fold {fold}: {method} for the disease class (raw, common scale)")
    return result
