"""The training job on a toy cohort: it learns, selects on validation only, is reproducible and resumable."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from dataclasses import asdict, replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from headmri.atomic import write_tsv
from headmri.config import TrainingConfig
from headmri.errors import ConfigError, InputError, LeakageError
from headmri.slices import extract_slices
from headmri.slices.loader import SliceBatchLoader
from headmri.splits import expand_to_images, make_splits
from headmri.training import OUTPUTS, EncoderChoice, FoldJob, FoldSettings, load_trained, train_fold
from headmri.training.job import BEST_FILE, RESUME_FILE, read_fold
from headmri.training.oversample import oversample_subjects
from headmri.training.schedule import WarmupCosine

CLASSES = ("HC", "migraine")
TRAINING = TrainingConfig(epochs=3, batch_size=16, lr=3e-4, weight_decay=0.05, warmup_epochs=1, patience=3,
                          grad_clip=1.0, seed=7, max_slices_per_subject=None)
VOLUME_SHAPE = (12, 20, 16)


def make_cohort(root: Path, sizes: dict[str, int], *, seed: int = 0) -> pd.DataFrame:
    """Small synthetic brains cut into 112 px slices by the real slice extractor. Every non-HC group
    has a bright block in a group-specific place: trivially separable."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    places = {"migraine": (slice(6, 12), slice(5, 10)), "APTH": (slice(2, 7), slice(9, 14)), "PPTH": (slice(12, 17), slice(3, 7))}
    rows, index = [], 0
    for group, n in sizes.items():
        for _ in range(n):
            index += 1
            pid = f"sub-toy{index:02d}"
            volume = rng.normal(1.0, 0.1, VOLUME_SHAPE).astype(np.float32)
            mask = np.zeros(VOLUME_SHAPE, bool)
            mask[1:-1, 2:-2, 2:-2] = True
            if group in places:
                volume[(slice(None), *places[group])] *= 2.0
            volume[~mask] = 0
            nib.save(nib.Nifti1Image(volume, np.eye(4)), root / f"{pid}_brain.nii.gz")
            nib.save(nib.Nifti1Image(mask.astype(np.uint8), np.eye(4)), root / f"{pid}_mask.nii.gz")
            extract_slices(root / f"{pid}_brain.nii.gz", root / f"{pid}_mask.nii.gz", root / f"{pid}_slices.npy",
                           root / f"{pid}_slices.json", size=112, subject=pid)
            rows.append({"participant_id": pid, "group": group})
    return pd.DataFrame(rows)


def write_split(root: Path, participants: pd.DataFrame, classes=CLASSES) -> Path:
    split = make_splits(participants, list(classes), folds=2, val_per_class=1, test_per_class=1, seed=3)
    write_tsv(expand_to_images(split), root / "split.tsv")  # as the workflow writes it: with each image's subject
    return root / "split.tsv"


def run_job(split_tsv: Path, slices, out_dir: Path, classes=CLASSES, training=TRAINING, slice_size=None) -> pd.DataFrame:
    return train_fold(split_tsv, out_dir, FoldJob("toy", classes, 1, "vittinydemo"), EncoderChoice("vit_tiny_demo"),
                      training, slices, FoldSettings(slice_size=slice_size, threads=1, progress=False))


def history_without_time(out_dir: Path) -> pd.DataFrame:
    return pd.read_csv(out_dir / "history.tsv", sep="\t").drop(columns="seconds")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    participants = make_cohort(root, {"HC": 4, "migraine": 5})
    return root, write_split(root, participants)


@pytest.fixture(scope="module")
def reference(cohort, tmp_path_factory):
    root, split_tsv = cohort
    out = tmp_path_factory.mktemp("reference")
    metrics = run_job(split_tsv, root, out)
    return out, metrics


def test_training_learns_the_toy_task_and_writes_every_output(cohort, reference):
    root, split_tsv = cohort
    out, metrics = reference
    assert all((out / name).is_file() for name in OUTPUTS)
    assert not (out / RESUME_FILE).exists()  # resume files are gone once the outputs exist
    history = pd.read_csv(out / "history.tsv", sep="\t")
    assert list(history.columns) == ["epoch", "train_loss", "val_loss", "val_auc", "val_prob_spread", "lr", "seconds",
                                     "selected"]
    assert history["train_loss"].iloc[-1] < 0.5 * history["train_loss"].iloc[0]
    assert history["val_loss"].iloc[-1] < history["val_loss"].iloc[0]
    assert history["selected"].sum() == 1
    test = metrics.set_index("split").loc["test"]
    assert test["auc"] == 1.0 and test["accuracy"] == 1.0
    table = pd.read_csv(out / "metrics.tsv", sep="\t")
    for column in ["task", "model", "fold", "split", "accuracy", "precision", "specificity", "sensitivity", "auc",
                   "f1", "balanced_accuracy", "tp", "fp", "tn", "fn"]:
        assert column in table.columns
    assert sorted(table["split"]) == ["test", "val"]
    # the learned-or-not verdict rides on every row
    assert table["learned"].tolist() == [True, True]
    assert (table["selected_epoch"] == history.loc[history["selected"], "epoch"].iloc[0]).all()
    assert (table["selected_train_loss"] < 0.9 * table["chance_loss"]).all() and (table["prob_spread"] > 0.5).all()

    # Slice predictions: every slice of every val/test subject, and model.pt reproduces them.
    per_slice = pd.read_csv(out / "predictions_slices.tsv", sep="\t")
    fold = read_fold(split_tsv, 1, CLASSES)
    held_out = pd.concat([fold.val, fold.test])
    assert set(per_slice["participant_id"]) == set(held_out["participant_id"])
    pid = fold.test["participant_id"].iloc[0]
    slices = np.load(root / f"{pid}_slices.npy")
    mine = per_slice[per_slice["participant_id"] == pid].sort_values("slice_position")
    assert list(mine["slice_position"]) == list(range(len(slices)))
    kept = json.loads((root / f"{pid}_slices.json").read_text())["geometry"]["kept_indices"]
    assert list(mine["slice_index"]) == kept
    model, meta = load_trained(out / "model.pt")
    assert meta["classes"] == list(CLASSES) and meta["input_size"] == 112 and meta["fold"] == 1
    loader = SliceBatchLoader([root / f"{pid}_slices.npy"], [0], 64, shuffle=False, seed=0)
    with torch.no_grad():
        probs = torch.cat([torch.softmax(model(x), 1) for x, _, _ in loader]).numpy()
    np.testing.assert_allclose(probs[:, 1], mine["prob_migraine"], atol=1e-5)
    per_subject = pd.read_csv(out / "predictions_subjects.tsv", sep="\t").set_index("participant_id")
    assert per_subject.loc[pid, "prob_migraine"] == pytest.approx(mine["prob_migraine"].mean(), abs=1e-5)
    # each image's participant rides along (the metrics count participants: one image each here)
    assert (per_subject["subject"] == per_subject.index).all()


def test_same_seed_gives_identical_history_and_predictions(cohort, reference, tmp_path):
    root, split_tsv = cohort
    out, _ = reference
    run_job(split_tsv, root, tmp_path)
    pd.testing.assert_frame_equal(history_without_time(tmp_path), history_without_time(out))
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "predictions_slices.tsv", sep="\t"),
                                  pd.read_csv(out / "predictions_slices.tsv", sep="\t"))


def test_augmented_training_is_reproducible_and_differs_from_plain_training(cohort, reference, tmp_path):
    root, split_tsv = cohort
    out, _ = reference
    jittered = replace(TRAINING, augment="affine")
    run_job(split_tsv, root, tmp_path / "a", training=jittered)
    run_job(split_tsv, root, tmp_path / "b", training=jittered)
    first = history_without_time(tmp_path / "a")
    pd.testing.assert_frame_equal(history_without_time(tmp_path / "b"), first)
    assert not np.allclose(first["train_loss"], history_without_time(out)["train_loss"])


def test_checkpoint_is_chosen_on_validation_subjects_only(cohort, reference, tmp_path):
    """Changing the test subjects' data changes their predictions but not training or selection; a
    stale resume file from other settings is ignored (clean restart)."""
    root, split_tsv = cohort
    out, _ = reference
    fold = read_fold(split_tsv, 1, CLASSES)
    altered = {}
    for pid in pd.concat([fold.train, fold.val, fold.test])["participant_id"]:
        altered[pid] = root / f"{pid}_slices.npy"
    for pid in fold.test["participant_id"]:
        flipped = tmp_path / "inputs" / f"{pid}_slices.npy"
        flipped.parent.mkdir(exist_ok=True)
        np.save(flipped, 255 - np.load(root / f"{pid}_slices.npy"))
        (tmp_path / "inputs" / f"{pid}_slices.json").write_text((root / f"{pid}_slices.json").read_text())
        altered[pid] = flipped
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    torch.save({"fingerprint": "from another configuration", "epoch": 2}, run_dir / RESUME_FILE)
    run_job(split_tsv, altered, run_dir)
    pd.testing.assert_frame_equal(history_without_time(run_dir), history_without_time(out))
    ours = pd.read_csv(run_dir / "predictions_slices.tsv", sep="\t")
    theirs = pd.read_csv(out / "predictions_slices.tsv", sep="\t")
    val = ours["split"] == "val"
    pd.testing.assert_frame_equal(ours[val], theirs[val])
    assert not np.allclose(ours.loc[~val, "prob_migraine"], theirs.loc[~val, "prob_migraine"])


def test_without_validation_subjects_the_last_epoch_is_evaluated_and_other_rules_refuse(cohort, tmp_path):
    root, _ = cohort
    participants = pd.DataFrame({"participant_id": sorted(p.name[:-len("_slices.npy")] for p in root.glob("*_slices.npy"))})
    participants["group"] = np.where(participants.index < 4, "HC", "migraine")
    split = make_splits(participants, list(CLASSES), folds=2, val_per_class=0, test_per_class=1, seed=3)
    write_tsv(expand_to_images(split), tmp_path / "split.tsv")
    with pytest.raises(InputError, match="no validation subjects.*selection 'loss'"):
        run_job(tmp_path / "split.tsv", root, tmp_path / "refused", training=replace(TRAINING, selection="loss"))
    assert not (tmp_path / "refused" / "history.tsv").exists()
    metrics = run_job(tmp_path / "split.tsv", root, tmp_path / "run", training=replace(TRAINING, selection="last"))
    history = pd.read_csv(tmp_path / "run" / "history.tsv", sep="\t")
    assert history["val_loss"].isna().all() and history["selected"].tolist() == [False, False, True]
    assert set(metrics["split"]) == {"test"} and metrics["learned"].all()
    # the learned check spreads over the whole fold (7 training + 2 test subjects), not a lone test pair
    assert metrics["learned_reason"].str.endswith("over the 9 subjects of the fold").all()
    predicted = pd.read_csv(tmp_path / "run" / "predictions_subjects.tsv", sep="\t")
    assert sorted(predicted["participant_id"]) == sorted(split.query("fold == 1 and split == 'test'")["participant_id"])


@pytest.mark.slow
def test_killed_job_resumes_and_matches_an_uninterrupted_run(cohort, reference, tmp_path):
    """Kill -9 the job once its first epoch is saved; the rerun continues from there and ends exactly
    where the uninterrupted run ended."""
    root, split_tsv = cohort
    out, _ = reference
    script = textwrap.dedent(f"""
        import logging, sys
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
        from headmri.config import TrainingConfig
        from headmri.training import EncoderChoice, FoldJob, FoldSettings, train_fold
        train_fold({str(split_tsv)!r}, {str(tmp_path)!r}, FoldJob("toy", {CLASSES!r}, 1, "vittinydemo"),
                   EncoderChoice("vit_tiny_demo"), TrainingConfig(**{asdict(TRAINING)!r}), {str(root)!r},
                   FoldSettings(threads=1, progress=False))
    """)
    job = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    # a best epoch saves its resume state as the best checkpoint, any other epoch as the resume file
    saved = [tmp_path / BEST_FILE, tmp_path / RESUME_FILE]
    deadline = time.monotonic() + 300
    while not any(p.exists() for p in saved) and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    job.kill()
    job.wait()
    assert any(p.exists() for p in saved), job.stderr.read()
    assert not (tmp_path / "model.pt").exists(), "the job finished before it could be killed"
    saved_epoch = max(torch.load(p, weights_only=True)["epoch"] for p in saved if p.exists())
    assert 1 <= saved_epoch < TRAINING.epochs

    import logging

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("headmri.training.job").addHandler(handler)
    logging.getLogger("headmri.training.job").setLevel(logging.INFO)
    try:
        run_job(split_tsv, root, tmp_path)
    finally:
        logging.getLogger("headmri.training.job").removeHandler(handler)
    assert any(f"after epoch {saved_epoch}" in r.getMessage() for r in records)  # it resumed, not restarted
    pd.testing.assert_frame_equal(history_without_time(tmp_path), history_without_time(out))
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "predictions_slices.tsv", sep="\t"),
                                  pd.read_csv(out / "predictions_slices.tsv", sep="\t"))


def test_a_fold_that_does_not_learn_is_flagged_in_its_metrics_and_log(cohort, tmp_path, caplog):
    root, split_tsv = cohort
    frozen = TrainingConfig(**{**asdict(TRAINING), "epochs": 2, "lr": 1e-9})  # the weights barely move
    with caplog.at_level("INFO", logger="headmri.training.job"):
        run_job(split_tsv, root, tmp_path, training=frozen)
    table = pd.read_csv(tmp_path / "metrics.tsv", sep="\t")
    assert table["learned"].tolist() == [False, False]
    assert table["chance_loss"].iloc[0] == pytest.approx(np.log(2))
    assert "never went below" in table["learned_reason"].iloc[0]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("fold 1 DID NOT LEARN" in message for message in warnings)


def test_multiclass_task_uses_the_same_path(tmp_path):
    classes = ("HC", "migraine", "APTH")
    participants = make_cohort(tmp_path / "data", {"HC": 3, "migraine": 3, "APTH": 3}, seed=1)
    split_tsv = write_split(tmp_path / "data", participants, classes)
    training = TrainingConfig(**{**asdict(TRAINING), "epochs": 2, "max_slices_per_subject": 6})
    metrics = run_job(split_tsv, tmp_path / "data", tmp_path / "out", classes=classes, training=training)
    assert list(metrics["split"]) == ["test", "val"]
    assert metrics["auc"].notna().all()  # one-vs-rest over three classes
    subjects = pd.read_csv(tmp_path / "out" / "predictions_subjects.tsv", sep="\t")
    assert {"prob_HC", "prob_migraine", "prob_APTH"} <= set(subjects.columns)
    np.testing.assert_allclose(subjects[["prob_HC", "prob_migraine", "prob_APTH"]].sum(axis=1), 1.0, atol=1e-5)
    assert load_trained(tmp_path / "out" / "model.pt")[0].head.out_features == 3


def test_leakage_stops_the_job_before_training(cohort, tmp_path):
    root, split_tsv = cohort
    split = pd.read_csv(split_tsv, sep="\t")
    test_pid = split[(split["fold"] == 1) & (split["split"] == "test")]["participant_id"].iloc[0]
    split.loc[(split["fold"] == 2) & (split["participant_id"] == test_pid), "split"] = "test"  # a test subject twice
    write_tsv(split, tmp_path / "leaky.tsv")
    with pytest.raises(LeakageError, match=test_pid):
        run_job(tmp_path / "leaky.tsv", root, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bad_encoder_size_and_missing_inputs_fail_before_training(cohort, tmp_path):
    root, split_tsv = cohort
    with pytest.raises(ConfigError, match="unknown encoder 'vit_huge_typo'.*biomedclip"):
        train_fold(split_tsv, tmp_path / "a", FoldJob("toy", CLASSES, 1, "x"), EncoderChoice("vit_huge_typo"), TRAINING,
                   root)
    with pytest.raises(ConfigError, match="slice size is 224 but encoder .* takes 112x112.*to null"):
        run_job(split_tsv, root, tmp_path / "b", slice_size=224)
    fold = read_fold(split_tsv, 1, CLASSES)
    test_pid = fold.test["participant_id"].iloc[0]
    inputs = {pid: root / f"{pid}_slices.npy" for pid in pd.concat([fold.train, fold.val])["participant_id"]}
    inputs[test_pid] = tmp_path / "missing_slices.npy"
    with pytest.raises(InputError, match=f"subject {test_pid}.*missing_slices.npy"):
        run_job(split_tsv, inputs, tmp_path / "c")
    small = tmp_path / "small"
    small.mkdir()
    for pid in pd.read_csv(split_tsv, sep="\t")["participant_id"].unique():
        np.save(small / f"{pid}_slices.npy", np.zeros((3, 64, 64), np.uint8))
        (small / f"{pid}_slices.json").write_text((root / f"{pid}_slices.json").read_text())
    with pytest.raises(InputError, match="64x64.*takes 112x112.*or 112"):
        run_job(split_tsv, small, tmp_path / "d")


def test_oversampling_balances_classes_per_epoch():
    labels = np.array([0] * 7 + [1] * 3 + [2] * 2)
    for epoch in range(3):
        picked = oversample_subjects(labels, seed=5, epoch=epoch)
        assert np.bincount(labels[picked]).tolist() == [7, 7, 7]
        assert sorted(set(picked[labels[picked] == 1])) == [7, 8, 9]  # every minority subject is used
        counts = np.bincount(picked, minlength=labels.size)
        assert counts[:7].tolist() == [1] * 7 and counts[7:10].max() - counts[7:10].min() <= 1
    assert not np.array_equal(oversample_subjects(labels, seed=5, epoch=0), oversample_subjects(labels, seed=5, epoch=1)) or \
        not np.array_equal(oversample_subjects(labels, seed=5, epoch=0), oversample_subjects(labels, seed=5, epoch=2))
    np.testing.assert_array_equal(oversample_subjects(labels, seed=5, epoch=1), oversample_subjects(labels, seed=5, epoch=1))


def test_training_loader_of_the_job_is_balanced(cohort):
    root, split_tsv = cohort
    fold = read_fold(split_tsv, 1, CLASSES)
    assert np.bincount(fold.train["class_index"]).tolist() == [2, 3]  # imbalanced before oversampling
    picked = fold.train.iloc[oversample_subjects(fold.train["class_index"].to_numpy(), seed=0)]
    loader = SliceBatchLoader([root / f"{p}_slices.npy" for p in picked["participant_id"]], picked["class_index"].tolist(),
                              32, shuffle=True, seed=0)
    labels = torch.cat([y for _, y, _ in loader]).numpy()
    assert np.bincount(labels).tolist() == [30, 30]  # 3 subjects x 10 slices per class


def test_warmup_then_cosine_schedule():
    factor = WarmupCosine(warmup_steps=4, total_steps=14)
    assert [factor(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert factor(4) == 1.0 and factor(9) == pytest.approx(0.5) and factor(14) == pytest.approx(0.0)
    assert all(factor(s) >= factor(s + 1) for s in range(4, 14))
    assert WarmupCosine(0, 10)(0) == 1.0


class _RecordingWriter:
    def __init__(self):
        self.saved = []

    def save(self, obj, path):
        self.saved.append((obj["epoch"], Path(path).name))


def test_best_epochs_save_the_best_checkpoint_and_others_the_resume_file_every_n(tmp_path):
    from headmri.training.job import EarlyStopping, Progress, _save_progress

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    parts = {"model": model, "optimizer": optimizer,
             "scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)}

    def saved(every):
        writer, progress = _RecordingWriter(), Progress(stopping=EarlyStopping(patience=9))
        for epoch in range(1, 6):
            progress.epoch, progress.finished = epoch, epoch == 5
            _save_progress(writer, tmp_path, "print", progress, parts, best=epoch in (1, 3), every=every)
        return writer.saved

    assert saved(1) == [(1, BEST_FILE), (2, RESUME_FILE), (3, BEST_FILE), (4, RESUME_FILE), (5, RESUME_FILE)]
    assert saved(2) == [(1, BEST_FILE), (2, RESUME_FILE), (3, BEST_FILE), (4, RESUME_FILE), (5, RESUME_FILE)]
    assert saved(3) == [(1, BEST_FILE), (3, BEST_FILE), (5, RESUME_FILE)]  # 3 is best; 5 ends training


def test_a_job_resumes_from_the_newer_of_best_checkpoint_and_resume_file(tmp_path):
    from headmri.training.job import _newest_state

    def write(name, epoch, fingerprint="print"):
        torch.save({"fingerprint": fingerprint, "epoch": epoch, "model": {"w": torch.full((2,), float(epoch))}},
                   tmp_path / name)

    assert _newest_state(tmp_path, "print") is None
    write(BEST_FILE, 3)
    write(RESUME_FILE, 2)  # stale: the best checkpoint of epoch 3 came later
    assert _newest_state(tmp_path, "print")["epoch"] == 3
    write(RESUME_FILE, 5)
    state = _newest_state(tmp_path, "print")
    assert state["epoch"] == 5 and torch.equal(state["model"]["w"], torch.full((2,), 5.0))
    write(RESUME_FILE, 7, fingerprint="other settings")
    assert _newest_state(tmp_path, "print")["epoch"] == 3


def test_checkpoint_writer_writes_copies_in_order_in_the_background(tmp_path):
    from headmri.training.checkpoint import CheckpointWriter

    weights = torch.zeros(3)
    writer = CheckpointWriter()
    for step in range(3):
        weights += 1  # training goes on changing the tensor while the file is written
        writer.save({"step": step, "w": weights}, tmp_path / "state.pt")
    weights += 10
    writer.close()
    saved = torch.load(tmp_path / "state.pt", weights_only=True)
    assert saved["step"] == 2 and torch.equal(saved["w"], torch.full((3,), 3.0))
    (tmp_path / "a-file").write_text("")
    writer = CheckpointWriter()
    writer.save({"w": weights}, tmp_path / "a-file" / "state.pt")  # fails on the writer thread
    with pytest.raises(OSError):  # and says so to the training thread
        writer.close()
