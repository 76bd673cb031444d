"""training.reference: controls: every slice minus the fold's training controls' mean slice at its position,
each training control against the others, in the loader, the training job and the explain job alike."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from explain_call import explain

from headmri.config import BaselineConfig, TrainingConfig
from headmri.errors import ConfigError, InputError
from headmri.explain import regions
from headmri.explain.job import SubjectFiles
from headmri.explain.maps import slice_maps
from headmri.models import build_architecture
from headmri.slices.geometry import SliceGeometry
from headmri.slices.loader import SliceBatchLoader
from headmri.slices.reference import ControlReference
from headmri.training import load_trained, save_trained, train_fold
from headmri.training.job import EncoderChoice, FoldJob, FoldSettings

SHAPE = (14, 20, 16)  # a small "MNI grid": sagittal slices, padded to 20 x 20, resized to the CNN's 64
AFFINE = np.array([[1.0, 0, 0, -7], [0, 1, 0, -10], [0, 0, 1, -8], [0, 0, 0, 1]])
CLASSES = ("HC", "migraine")
CODES = [1022, 2022]
# fold 1: two training controls, a test control, two training patients, a test patient
ROLES = {"sub-h1": ("HC", "train"), "sub-h2": ("HC", "train"), "sub-h3": ("HC", "test"),
         "sub-p1": ("migraine", "train"), "sub-p2": ("migraine", "train"), "sub-p3": ("migraine", "test")}
TRAINING = TrainingConfig(epochs=2, batch_size=8, lr=1e-3, warmup_epochs=1, patience=2, seed=3, selection="last",
                          reference="controls")


def _labels() -> np.ndarray:
    labels = np.zeros(SHAPE, np.int16)
    labels[2:7, 3:17, 2:14] = 1022
    labels[7:12, 3:17, 2:14] = 2022
    return labels


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Six subjects' slices (sub-h1 without its first kept position: a control with a slice missing), the
    parcellation and a split; patients are darker in region 1022."""
    root = tmp_path_factory.mktemp("reference")
    rng = np.random.default_rng(0)
    for pid, (group, _) in ROLES.items():
        brain = np.where(_labels() > 0, 0.5 + 0.3 * rng.random(SHAPE), 0).astype(np.float32)
        if group == "migraine":
            brain[_labels() == 1022] *= 0.6
        kept = range(3, 12) if pid == "sub-h1" else range(2, 12)
        geometry = SliceGeometry.create(axis=0, size=64, source_shape=SHAPE, source_affine=AFFINE, kept_indices=kept,
                                        dropped_indices=[i for i in range(SHAPE[0]) if i not in kept])
        slices = (np.clip(geometry.slices_from_volume(brain), 0, 1) * 255).round().astype(np.uint8)
        np.save(root / f"{pid}_slices.npy", slices)
        (root / f"{pid}_slices.json").write_text(json.dumps(geometry.to_dict()))
        nib.save(nib.Nifti1Image(_labels(), AFFINE), root / f"{pid}_dseg.nii.gz")
    split = pd.DataFrame({"participant_id": list(ROLES), "label": [p[4:] for p in ROLES],
                          "group": [g for g, _ in ROLES.values()], "class_index": [int(g != "HC") for g, _ in ROLES.values()],
                          "fold": 1, "split": [s for _, s in ROLES.values()]})
    split.to_csv(root / "split.tsv", sep="\t", index=False)
    return root


def _grey_by_position(root: Path, pid: str) -> dict[int, np.ndarray]:
    kept = SliceGeometry.from_json(root / f"{pid}_slices.json").kept_indices
    return dict(zip(kept, np.load(root / f"{pid}_slices.npy").astype(np.float32) / 255))


def _files(root: Path, pids) -> dict[str, tuple[Path, Path]]:
    return {pid: (root / f"{pid}_slices.npy", root / f"{pid}_slices.json") for pid in pids}


def test_a_training_control_is_compared_with_the_other_controls_and_everyone_else_with_all(cohort):
    reference = ControlReference.of_controls(_files(cohort, ["sub-h1", "sub-h2"]))
    h1, h2, p3 = (_grey_by_position(cohort, pid) for pid in ("sub-h1", "sub-h2", "sub-p3"))
    empty = np.zeros_like(h2[2])
    for pid, own, other in (("sub-h1", h1, h2), ("sub-h2", h2, h1)):  # each control against the other one alone
        seen = reference.apply(torch.from_numpy(np.stack(list(own.values())))[:, None], pid, list(own))
        expected = np.stack([own[k] - other.get(k, empty) for k in own])
        np.testing.assert_allclose(seen[:, 0].numpy(), expected, atol=1e-6)
    # a held-out subject against the mean of both; where sub-h1 has no slice it counts as an empty one
    seen = reference.apply(torch.from_numpy(np.stack(list(p3.values())))[:, None], "sub-p3", list(p3))
    expected = np.stack([p3[k] - (h1.get(k, empty) + h2[k]) / 2 for k in p3])
    np.testing.assert_allclose(seen[:, 0].numpy(), expected, atol=1e-6)


def test_the_loader_gives_each_slice_minus_its_positions_reference(cohort):
    pids = ["sub-h1", "sub-p3", "sub-h2"]
    reference = ControlReference.of_controls(_files(cohort, ["sub-h1", "sub-h2"]))
    kept = {pid: SliceGeometry.from_json(cohort / f"{pid}_slices.json").kept_indices for pid in pids}
    batches = reference.for_loader([(pid, kept[pid]) for pid in pids])
    loader = SliceBatchLoader([cohort / f"{pid}_slices.npy" for pid in pids], [0, 1, 0], 7, shuffle=True, seed=1,
                              with_slice_index=True, reference=batches, threads=2)
    plain = SliceBatchLoader([cohort / f"{pid}_slices.npy" for pid in pids], [0, 1, 0], 7, shuffle=True, seed=1,
                             with_slice_index=True)
    seen = 0
    for (x, _, subject, index), (grey, *_) in zip(loader, plain):
        for row in range(len(x)):
            pid = pids[int(subject[row])]
            one = reference.apply(grey[row:row + 1].clone(), pid, [kept[pid][int(index[row])]])
            torch.testing.assert_close(x[row], one[0])
        seen += len(x)
    assert seen == sum(len(k) for k in kept.values())


def _train(root: Path, out: Path, training: TrainingConfig = TRAINING):
    return train_fold(root / "split.tsv", out, FoldJob("migraine", CLASSES, 1, "cnndemo"), EncoderChoice("cnn_demo"),
                      training, root, FoldSettings(threads=1, progress=False))


def test_training_against_the_controls_records_them_and_sees_other_inputs_than_plain_slices(cohort, tmp_path):
    _train(cohort, tmp_path / "controls")
    _train(cohort, tmp_path / "plain", replace(TRAINING, reference="none"))
    _, meta = load_trained(tmp_path / "controls" / "model.pt")
    assert meta["reference"] == "controls" and meta["reference_controls"] == ["sub-h1", "sub-h2"]
    assert load_trained(tmp_path / "plain" / "model.pt")[1]["reference"] == "none"
    with_reference, plain = (pd.read_csv(tmp_path / name / "history.tsv", sep="\t") for name in ("controls", "plain"))
    assert not np.allclose(with_reference["train_loss"], plain["train_loss"])


@pytest.mark.parametrize("reference", ["controls", "none"])
def test_a_training_subject_without_its_slice_geometry_stops_the_job_before_training(cohort, tmp_path, reference):
    """Either way: the control reference reads every subject's slice positions, and after training every
    subject is scored (the learned check)."""
    broken = tmp_path / "cohort"
    broken.mkdir()
    for path in cohort.iterdir():
        if path.name != "sub-p1_slices.json":
            (broken / path.name).symlink_to(path)
    with pytest.raises(InputError, match="sub-p1.*no geometry JSON"):
        _train(broken, tmp_path / "out", replace(TRAINING, reference=reference))
    assert not (tmp_path / "out" / "history.tsv").exists()


def _explain(root: Path, model_path: Path, out: Path, **settings):
    files = {pid: SubjectFiles(root / f"{pid}_slices.npy", root / f"{pid}_slices.json", root / f"{pid}_dseg.nii.gz")
             for pid in ROLES}
    patients = {pid: f for pid, f in files.items() if ROLES[pid][0] == "migraine"}
    controls = {pid: f for pid, f in files.items() if ROLES[pid][0] == "HC"}
    return explain(model_path=model_path, split_tsv=root / "split.tsv", task="migraine", classes=CLASSES, fold=1,
                   subjects=patients, controls=controls, regions_tsv=out / "regions.tsv", mean_map=out / "mean.nii.gz",
                   summary_json=out / "explain.json", device="cpu", **settings)


def test_the_explanation_sees_the_differences_the_model_was_trained_on(cohort, tmp_path):
    torch.manual_seed(0)
    model = build_architecture("cnn_demo", CLASSES).eval()
    save_trained(model, tmp_path / "model.pt", task="migraine", fold=1, reference="controls",
                 reference_controls=["sub-h1", "sub-h2"])
    table = _explain(cohort, tmp_path / "model.pt", tmp_path / "out", method="gradcam", statistic="mean")
    reference = ControlReference.of_controls(_files(cohort, ["sub-h1", "sub-h2"]))
    geometry = SliceGeometry.from_json(cohort / "sub-p3_slices.json")
    grey = torch.from_numpy(np.load(cohort / "sub-p3_slices.npy").astype(np.float32) / 255)[:, None]
    inputs = reference.apply(grey, "sub-p3", geometry.kept_indices)
    volume = geometry.to_volume(slice_maps(model, inputs, method="gradcam", target=1, target_layer="features.block5"))
    expected = regions.regional_values(volume, _labels().astype(np.int32), CODES, "mean")
    np.testing.assert_allclose(table.sort_values("label")["value"], expected, rtol=1e-4, atol=1e-7)
    summary = json.loads((tmp_path / "out" / "explain.json").read_text())
    assert summary["input_reference"] == "controls" and summary["reference_controls"] == ["sub-h1", "sub-h2"]
    # the model was trained against other controls than the split's fold has: an error, not another reference
    save_trained(model, tmp_path / "other.pt", task="migraine", fold=1, reference="controls", reference_controls=["sub-h1"])
    with pytest.raises(InputError, match="trained against the mean of the controls \\['sub-h1'\\]"):
        _explain(cohort, tmp_path / "other.pt", tmp_path / "other", method="gradcam")


def test_the_reference_is_a_checked_setting_and_the_3d_baseline_takes_none():
    with pytest.raises(ConfigError, match="training.reference must be one of"):
        TrainingConfig(reference="patients")
    assert BaselineConfig().training(TRAINING).reference == "none"
