"""The explain_fold job on a tiny synthetic fold: outputs, patient selection, and every bad input."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from explain_call import explain

from headmri.errors import ConfigError, InputError
from headmri.explain import regions
from headmri.explain.job import SubjectFiles
from headmri.explain.maps import slice_maps
from headmri.models import build_architecture
from headmri.slices.geometry import SliceGeometry
from headmri.training import save_trained

from workflow_runner import dry_run, write_config

SHAPE = (14, 20, 16)  # a small "MNI grid": sagittal slices of 16 x 20, padded to 20 x 20
AFFINE = np.array([[1.0, 0, 0, -7], [0, 1, 0, -10], [0, 0, 1, -8], [0, 0, 0, 1]])
CODES = [17, 1022, 2022, 3022]
CLASSES = ("HC", "migraine")
SUBJECTS = {"sub-p1": "migraine", "sub-p2": "migraine", "sub-h1": "HC"}


def _labels() -> np.ndarray:
    labels = np.zeros(SHAPE, np.int16)
    labels[2:7, 3:17, 2:14] = 1022
    labels[7:12, 3:17, 2:14] = 2022
    labels[2:12, 3:17, 10:14] = 3022
    labels[5:9, 8:12, 3:6] = 17
    return labels


@pytest.fixture(scope="module")
def fold(tmp_path_factory):
    root = tmp_path_factory.mktemp("fold")
    torch.manual_seed(0)
    model = build_architecture("vit_tiny_demo", CLASSES)
    with torch.no_grad():
        model.head.weight.mul_(20)
    save_trained(model, root / "model.pt", task="migraine", fold=1)
    rng = np.random.default_rng(0)
    files = {}
    for pid in SUBJECTS:
        brain = np.where(_labels() > 0, rng.random(SHAPE), 0).astype(np.float32)
        geometry = SliceGeometry.create(axis=0, size=model.input_size, source_shape=SHAPE, source_affine=AFFINE,
                                        kept_indices=range(2, 12), dropped_indices=[0, 1, 12, 13])
        slices = (np.clip(geometry.slices_from_volume(brain), 0, 1) * 255).round().astype(np.uint8)
        np.save(root / f"{pid}_slices.npy", slices)
        (root / f"{pid}_slices.json").write_text(json.dumps(geometry.to_dict()))
        nib.save(nib.Nifti1Image(_labels(), AFFINE), root / f"{pid}_dseg.nii.gz")
        files[pid] = SubjectFiles(root / f"{pid}_slices.npy", root / f"{pid}_slices.json", root / f"{pid}_dseg.nii.gz")
    split = pd.DataFrame({
        "participant_id": list(SUBJECTS) * 2,
        "label": [pid[4:] for pid in SUBJECTS] * 2,
        "group": list(SUBJECTS.values()) * 2,
        "class_index": [1, 1, 0] * 2,
        "fold": [1, 1, 1, 2, 2, 2],
        "split": ["test", "train", "test", "train", "test", "val"],
    })
    split.to_csv(root / "split.tsv", sep="\t", index=False)
    return root, files, model.eval()


def _run(root, files, out, **kwargs):
    arguments = dict(
        model_path=root / "model.pt", split_tsv=root / "split.tsv", task="migraine", classes=CLASSES, fold=1,
        subjects=files, regions_tsv=out / "regions.tsv", mean_map=out / "mean_map.nii.gz",
        summary_json=out / "explain.json", montage_png=out / "montage.png", device="cpu",
    )
    arguments.update(kwargs)
    return explain(**arguments)


def test_explain_fold_scores_the_test_patients_regions_from_raw_maps(fold, tmp_path):
    root, files, model = fold
    table = _run(root, files, tmp_path)
    # only the held-out test patient of the disease class; the healthy control is never explained
    assert set(table["participant_id"]) == {"sub-p1"} and set(table["target"]) == {"migraine"}
    assert set(table["split"]) == {"test"} and sorted(table["label"]) == CODES
    written = pd.read_csv(tmp_path / "regions.tsv", sep="\t")
    assert list(written.columns) == ["participant_id", "group", "split", "target", "label", "region", "value"]
    # the values are the regional maxima of the patient's own raw Grad-CAM volume, for the migraine class
    geometry = SliceGeometry.from_json(files["sub-p1"].geometry)
    raw = np.load(files["sub-p1"].slices).astype(np.float32) / 255
    inputs = (torch.from_numpy(raw)[:, None].repeat(1, 3, 1, 1) - torch.tensor(model.mean).view(1, 3, 1, 1)) / torch.tensor(model.std).view(1, 3, 1, 1)
    volume = geometry.to_volume(slice_maps(model, inputs, method="gradcam", target=1, target_layer="trunk.blocks[-1].norm1"))
    expected = regions.regional_values(volume, _labels().astype(np.int32), CODES, "max")
    np.testing.assert_allclose(table.sort_values("label")["value"], expected, rtol=1e-4)
    mean_img = nib.load(tmp_path / "mean_map.nii.gz")
    assert mean_img.shape == SHAPE and np.allclose(mean_img.affine, AFFINE)
    np.testing.assert_allclose(np.asarray(mean_img.dataobj), volume, rtol=1e-4, atol=1e-5 * volume.max())
    summary = json.loads((tmp_path / "explain.json").read_text())
    assert summary["participants"] == ["sub-p1"] and summary["targets"] == ["migraine"]
    assert (tmp_path / "montage.png").stat().st_size > 0


def test_all_patients_mean_statistic_rollout_and_nifti_maps(fold, tmp_path):
    root, files, _ = fold
    table = _run(root, files, tmp_path, patients="all", statistic="mean", method="rollout", maps_dir=tmp_path / "maps")
    assert set(table["participant_id"]) == {"sub-p1", "sub-p2"}  # training patients too, still no control
    assert (table["value"] > 0).all()
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == [
        "sub-p1_space-MNI152NLin6Asym_desc-rollout_map.nii.gz", "sub-p2_space-MNI152NLin6Asym_desc-rollout_map.nii.gz"]


def test_a_fold_without_a_trained_model_is_an_error(fold, tmp_path):
    root, files, _ = fold
    with pytest.raises(InputError, match="missing.pt: task migraine, fold 1 has no trained model"):
        _run(root, files, tmp_path, model_path=root / "missing.pt")


def test_a_target_class_the_task_does_not_have_is_an_error(fold, tmp_path):
    root, files, _ = fold
    # a model trained for another task (its classes lack 'migraine')
    with pytest.raises(InputError, match="trained on classes \\['HC', 'migraine'\\], but task apth has \\['HC', 'APTH'\\]"):
        _run(root, files, tmp_path, task="apth", classes=("HC", "APTH"))


def test_slices_whose_geometry_does_not_match_the_parcellation_are_an_error(fold, tmp_path):
    root, files, _ = fold
    shifted = AFFINE.copy()
    shifted[:3, 3] += 1.0
    nib.save(nib.Nifti1Image(_labels(), shifted), tmp_path / "shifted.nii.gz")
    nib.save(nib.Nifti1Image(np.pad(_labels(), ((0, 1), (0, 0), (0, 0))), AFFINE), tmp_path / "bigger.nii.gz")
    for bad, message in (("shifted.nii.gz", "affine does not match"), ("bigger.nii.gz", "grid \\(15, 20, 16\\) does not match")):
        broken = dict(files, **{"sub-p1": SubjectFiles(files["sub-p1"].slices, files["sub-p1"].geometry, tmp_path / bad)})
        with pytest.raises(InputError, match=f"subject sub-p1, file .*{bad}: the parcellation's {message}"):
            _run(root, broken, tmp_path)


def test_a_parcellation_missing_an_expected_region_is_an_error(fold, tmp_path):
    root, files, _ = fold
    table = tmp_path / "atlas.tsv"
    pd.DataFrame({"label": [*CODES, 1030]}).to_csv(table, sep="\t", index=False)
    with pytest.raises(InputError, match="subject sub-p1.*lacks 1 region.*ctx-lh-superiortemporal"):
        _run(root, files, tmp_path, expected_regions_tsv=table)


def test_a_split_made_for_another_task_is_an_error(fold, tmp_path):
    root, files, _ = fold
    split = pd.read_csv(root / "split.tsv", sep="\t")
    split["group"] = split["group"].replace("migraine", "APTH")
    split.to_csv(tmp_path / "split.tsv", sep="\t", index=False)
    with pytest.raises(InputError, match="sub-p1 is in group 'APTH' but has class index 1 \\('migraine'\\)"):
        _run(root, files, tmp_path, split_tsv=tmp_path / "split.tsv")


def test_bad_settings_are_config_errors(fold, tmp_path):
    root, files, _ = fold
    with pytest.raises(ConfigError, match="explain.patients"):
        _run(root, files, tmp_path, patients="some")
    with pytest.raises(ConfigError, match="region_statistic"):
        _run(root, files, tmp_path, statistic="median")
    with pytest.raises(ConfigError, match="layer path"):
        _run(root, files, tmp_path, target_layer="trunk.blocks[7].norm1")


@pytest.mark.slow  # whole MNI-grid volumes through a 3D ResNet-18: ~20 s on 2 cores
def test_the_3d_baseline_is_explained_with_gradcam_on_its_last_stage(tmp_path):
    from headmri.models import VolumeClassifier
    from headmri.models.resnet3d import TEMPLATE_SHAPE

    torch.manual_seed(0)
    save_trained(VolumeClassifier(CLASSES), tmp_path / "model.pt", task="migraine", fold=1)
    affine = np.array([[1.0, 0, 0, -91], [0, 1, 0, -126], [0, 0, 1, -72], [0, 0, 0, 1]])
    labels = np.zeros(TEMPLATE_SHAPE, np.int16)
    labels[40:91, 40:180, 30:150] = 1022
    labels[91:142, 40:180, 30:150] = 2022
    brain = np.where(labels > 0, np.random.default_rng(0).random(TEMPLATE_SHAPE), 0).astype(np.float32)
    nib.save(nib.Nifti1Image(labels, affine), tmp_path / "dseg.nii.gz")
    nib.save(nib.Nifti1Image(brain, affine), tmp_path / "brain.nii.gz")
    pd.DataFrame({"participant_id": ["sub-p1", "sub-h1"], "label": ["p1", "h1"], "group": ["migraine", "HC"],
                  "class_index": [1, 0], "fold": [1, 1], "split": ["test", "test"]}).to_csv(tmp_path / "split.tsv", sep="\t", index=False)
    files = {"sub-p1": SubjectFiles(None, None, tmp_path / "dseg.nii.gz", volume=tmp_path / "brain.nii.gz")}
    table = _run(tmp_path, files, tmp_path, target_layer="trunk.blocks[-1].norm1")  # the ViT default is not used
    assert sorted(table["label"]) == [1022, 2022] and (table["value"] >= 0).all()
    assert nib.load(tmp_path / "mean_map.nii.gz").shape == TEMPLATE_SHAPE
    assert json.loads((tmp_path / "explain.json").read_text())["target_layer"] == "backbone.layer4"
    with pytest.raises(ConfigError, match="explains slices models, not a .volume. model"):
        _run(tmp_path, files, tmp_path, method="rollout")


def test_the_folds_controls_are_explained_for_the_disease_class_when_asked(fold, tmp_path):
    root, files, _ = fold
    patients = {p: f for p, f in files.items() if SUBJECTS[p] == "migraine"}
    controls = {p: f for p, f in files.items() if SUBJECTS[p] == "HC"}
    plain = _run(root, patients, tmp_path / "plain")
    table = _run(root, patients, tmp_path / "both", controls=controls, explain_controls=True, maps_dir=tmp_path / "maps")
    # the fold's test control, by the patients' rule, explained for migraine; the patients' rows unchanged
    control = table[table["participant_id"] == "sub-h1"]
    assert set(control["group"]) == {"HC"} and set(control["target"]) == {"migraine"} and set(control["split"]) == {"test"}
    assert sorted(control["label"]) == CODES
    pd.testing.assert_frame_equal(table[table["participant_id"] != "sub-h1"].reset_index(drop=True), plain)
    summary = json.loads((tmp_path / "both" / "explain.json").read_text())
    assert summary["participants"] == ["sub-p1"] and summary["controls"] == ["sub-h1"]
    # the mean map stays the patients' mean
    np.testing.assert_array_equal(np.asarray(nib.load(tmp_path / "both" / "mean_map.nii.gz").dataobj),
                                  np.asarray(nib.load(tmp_path / "plain" / "mean_map.nii.gz").dataobj))
    assert (tmp_path / "maps" / "sub-h1_target-migraine_space-MNI152NLin6Asym_desc-gradcam_map.nii.gz").is_file()
    # fold 2 has no test control (h1 is its validation subject): nothing to contrast with, an error
    with pytest.raises(InputError, match="fold 2 has no test controls of 'HC' to explain"):
        _run(root, patients, tmp_path / "fold2", fold=2, controls=controls, explain_controls=True)
    with pytest.raises(InputError, match="no input files given for controls \\['sub-h1'\\]"):
        _run(root, patients, tmp_path / "none", explain_controls=True)


def test_the_randomisation_test_is_recorded_in_the_fold_summary(fold, tmp_path):
    root, files, _ = fold
    table = _run(root, files, tmp_path, patients="all", sanity={"patients": 1, "repeats": 2, "threshold": 0.5, "seed": 0})
    record = json.loads((tmp_path / "explain.json").read_text())["sanity"]
    assert record["n_patients"] == 1 and list(record["spearman_per_patient"]) == ["sub-p1"] and record["seeds"] == [0, 1]
    assert record["randomised"] == ["trunk.blocks.3", "trunk.blocks.2", "trunk.norm", "head"]
    assert -1 <= record["spearman"] <= 1 and record["passed"] == (record["spearman"] < 0.5)
    # the trained side of the comparison is the table's own row for that patient
    assert set(table["participant_id"]) == {"sub-p1", "sub-p2"}
    _run(root, files, tmp_path / "off")
    assert json.loads((tmp_path / "off" / "explain.json").read_text())["sanity"] is None


def _outputs(out):
    maps = {p.name: np.asarray(nib.load(p).dataobj) for p in sorted((out / "maps").iterdir())}
    return ((out / "regions.tsv").read_bytes(), np.asarray(nib.load(out / "mean_map.nii.gz").dataobj),
            json.loads((out / "explain.json").read_text()), maps)


def test_the_regional_work_beside_the_next_subjects_maps_gives_the_serial_outputs(fold, tmp_path):
    """explain_fold overlaps each subject's regional part with the next subject's maps (issue 17); the
    regions table, mean map, summary and every subject's map are those of the serial loop, to the bit."""
    root, files, _ = fold
    patients = {p: f for p, f in files.items() if SUBJECTS[p] == "migraine"}
    controls = {p: f for p, f in files.items() if SUBJECTS[p] == "HC"}
    found = {}
    for overlap in (False, True):
        out = tmp_path / f"overlap-{overlap}"
        _run(root, patients, out, patients="all", controls=controls, explain_controls=True, maps_dir=out / "maps",
             overlap=overlap)
        found[overlap] = _outputs(out)
    (serial_tsv, serial_mean, serial_json, serial_maps), (tsv, mean, summary, maps) = found[False], found[True]
    assert tsv == serial_tsv and summary == serial_json
    assert len(pd.read_csv(tmp_path / "overlap-True" / "regions.tsv", sep="\t")["participant_id"].unique()) == 3
    np.testing.assert_array_equal(mean, serial_mean)
    assert list(maps) == list(serial_maps) and len(maps) == 3
    for name in maps:
        np.testing.assert_array_equal(maps[name], serial_maps[name])


def test_the_regional_work_runs_in_order_on_one_background_thread_and_its_errors_reach_the_job():
    import threading

    from headmri.explain.job import _InOrder

    done, threads = [], set()

    def record(i):
        threads.add(threading.current_thread().name)
        done.append(i)

    with _InOrder(True) as work:
        for i in range(7):
            work.submit(lambda i=i: record(i))
    assert done == list(range(7)) and len(threads) == 1 and threading.current_thread().name not in threads

    def bad_map():
        raise InputError("the map is not on the parcellation's grid", subject="sub-x")

    with pytest.raises(InputError, match="sub-x"):
        with _InOrder(True) as work:
            work.submit(bad_map)
            for _ in range(3):
                work.submit(lambda: None)
    done.clear()
    with _InOrder(False) as work:  # overlap off: each piece at once, on this thread
        work.submit(lambda: record("now"))
        assert done == ["now"]


@pytest.mark.parametrize("ranking", ["contrast", "mean"])
def test_the_demo_config_explains_the_controls_only_for_its_contrast_ranking(tmp_path, ranking):
    """The workflow's wiring: with explain.ranking: contrast (the demo's) each explain job reads every
    control's parcellation (controls explained for the disease class); with mean only the patients'."""
    configfile = write_config(tmp_path / "config.yaml", results_dir=str(tmp_path / "results"), explain={"ranking": ranking})
    jobs = [job for job in dry_run(tmp_path, configfile) if job.rule == "explain_fold"]
    assert len(jobs) == 9  # 3 tasks x 3 folds
    for job in jobs:
        parcellated = {Path(f).name.split("_")[0] for f in job.inputs if f.endswith("wmparc_dseg.nii.gz")}
        controls = {s for s in parcellated if s.startswith("sub-hc")}
        assert len(parcellated - controls) == 8, job  # every patient of the task (explain.patients: all)
        assert len(controls) == (8 if ranking == "contrast" else 0), job


@pytest.mark.parametrize("reference", ["controls", "none"])
def test_models_trained_against_the_controls_get_the_controls_slices_in_their_explain_jobs(tmp_path, reference):
    """training.reference: controls: the explain job rebuilds the fold's control mean, so it reads the controls'
    slices even for a method without a neutral image (Grad-CAM) and without explained controls."""
    configfile = write_config(tmp_path / "config.yaml", results_dir=str(tmp_path / "results"),
                              training={"reference": reference}, explain={"method": "gradcam", "ranking": "mean"})
    jobs = [job for job in dry_run(tmp_path, configfile) if job.rule == "explain_fold"]
    assert len(jobs) == 9
    for job in jobs:
        sliced = {Path(f).name.split("_")[0] for f in job.inputs if f.endswith("_slices.npy")}
        assert len({s for s in sliced if s.startswith("sub-hc")}) == (8 if reference == "controls" else 0), job
