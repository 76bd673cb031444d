"""The configuration: schema validation with defaults, typed objects, and the checks beyond the schema."""

from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError

from headmri import config
from headmri.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def _write(tmp_path, data) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_default_config_is_the_demo_and_validates():
    cfg = config.load(ROOT / "config.yaml")
    assert cfg.is_demo
    assert [t.name for t in cfg.tasks] == ["migraine", "apth", "ppth"]
    assert cfg.task("apth").classes == ("HC", "APTH")
    assert cfg.task("apth").disease_classes == ("APTH",)


def test_schema_fills_defaults_for_missing_sections(tmp_path):
    cfg = config.load(_write(tmp_path, {"tasks": [{"name": "mig", "classes": ["HC", "migraine"]}]}))
    assert cfg.preprocessing.brain_extraction == "embedded"
    assert cfg.splits.folds == 5 and cfg.splits.val_per_class == 6 and cfg.splits.test_per_class == 6
    assert cfg.explain.target_layer is None  # the layer the model names (ViT: trunk.blocks[-1].norm1)
    assert cfg.slices.size is None  # the workflow takes the encoder's input size (test_sources.py)


def test_the_baseline_takes_its_own_hyper_parameters_and_the_shared_ones_where_null(tmp_path):
    tasks = [{"name": "mig", "classes": ["HC", "migraine"]}]
    shared = {"epochs": 12, "batch_size": 32, "lr": 5e-4, "patience": 6, "seed": 3}
    cfg = config.load(_write(tmp_path, {"tasks": tasks, "training": shared}))
    assert cfg.baseline.voxel_size_mm == 2.0
    assert cfg.baseline.training(cfg.training) == config.TrainingConfig(**{**shared, "batch_size": 4})
    own = {"lr": 1e-3, "epochs": 40, "batch_size": 2, "voxel_size_mm": 3.0}
    cfg = config.load(_write(tmp_path, {"tasks": tasks, "training": shared, "baseline": own}))
    baseline = cfg.baseline.training(cfg.training)
    assert (baseline.lr, baseline.epochs, baseline.batch_size) == (1e-3, 40, 2)
    assert (baseline.patience, baseline.seed, baseline.weight_decay) == (6, 3, cfg.training.weight_decay)
    assert cfg.training.lr == 5e-4 and cfg.training.batch_size == 32  # the ViT's settings are untouched
    assert cfg.baseline.voxel_size_mm == 3.0


@pytest.mark.parametrize(
    "bad",
    [
        {"preprocessing": {"brain_extraction": "robex"}},
        {"splits": {"folds": 1}},
        {"baseline": {"lr": 0}},
        {"baseline": {"learning_rate": 1e-3}},
        {"unknown_key": 1},
        {"tasks": [{"name": "Bad Name", "classes": ["HC", "migraine"]}]},
    ],
)
def test_schema_rejects_bad_values(tmp_path, bad):
    data = {"tasks": [{"name": "mig", "classes": ["HC", "migraine"]}]}
    data.update(bad)
    with pytest.raises(WorkflowError):
        config.load(_write(tmp_path, data))


def test_task_with_unknown_class_is_an_error(tmp_path):
    path = _write(tmp_path, {"tasks": [{"name": "mig", "classes": ["HC", "cluster"]}]})
    with pytest.raises(ConfigError, match="cluster"):
        config.load(path)


def test_duplicate_task_names_are_an_error(tmp_path):
    task = {"name": "mig", "classes": ["HC", "migraine"]}
    with pytest.raises(ConfigError, match="unique"):
        config.load(_write(tmp_path, {"tasks": [task, task]}))


def test_freesurfer_backend_needs_a_license(tmp_path):
    path = _write(tmp_path, {"tasks": [{"name": "mig", "classes": ["HC", "migraine"]}],
                             "preprocessing": {"parcellation": "freesurfer"}})
    with pytest.raises(ConfigError, match="license"):
        config.load(path)


@pytest.mark.parametrize(
    "value, expected",
    [("01,sub-02, 03", ("01", "02", "03")), (["sub-a1", "b2"], ("a1", "b2")), ("", ()), (None, ())],
)
def test_subjects_subset_from_command_line_forms(value, expected):
    assert config.parse_subjects(value) == expected


def test_multiclass_task_is_typed():
    task = config.Task("multiclass", ("HC", "migraine", "APTH", "PPTH"))
    assert not task.is_binary
    assert task.disease_classes == ("migraine", "APTH", "PPTH")


def test_compile_and_resume_interval_are_compute_settings_with_checked_values():
    from headmri.config import ComputeConfig

    assert ComputeConfig().compile is False and ComputeConfig().resume_every == 1
    nested = ComputeConfig(compile="true", resume_every="3")  # --config compute='{...}' gives strings
    assert nested.compile is True and nested.resume_every == 3
    with pytest.raises(ConfigError, match="compute.compile"):
        ComputeConfig(compile="yes")
    with pytest.raises(ConfigError, match="compute.resume_every"):
        ComputeConfig(resume_every=0)


def test_leave_one_subject_out_needs_every_patient_explained():
    tasks = [{"name": "t", "classes": ["HC", "migraine"]}]
    with pytest.raises(ConfigError, match="splits.scheme loso tests one participant per fold.*explain.patients: all"):
        config.from_mapping({"tasks": tasks, "splits": {"scheme": "loso"}})
    cfg = config.from_mapping({"tasks": tasks, "splits": {"scheme": "loso"}, "explain": {"patients": "all"},
                               "model": {"encoder": "googlenet", "freeze": "paper"}})
    assert cfg.splits.leave_one_subject_out and cfg.model.freeze == "paper"
    assert not config.from_mapping({"tasks": tasks}).splits.leave_one_subject_out


def test_no_validation_subjects_is_allowed_only_where_selection_chooses_nothing(tmp_path):
    tasks = [{"name": "t", "classes": ["HC", "migraine"]}]
    with pytest.raises(ConfigError, match="val_per_class is 0.*selection 'loss'.*selection: last"):
        config.load(_write(tmp_path, {"tasks": tasks, "splits": {"val_per_class": 0}}))
    cfg = config.load(_write(tmp_path, {"tasks": tasks, "splits": {"val_per_class": 0},
                                        "training": {"selection": "last"}}))
    assert cfg.splits.val_per_class == 0
    with pytest.raises(WorkflowError):  # the schema: no negative count
        config.load(_write(tmp_path, {"tasks": tasks, "splits": {"val_per_class": -1}}))
