"""What a person reads in a job's log file: one timestamped line per training epoch, no progress-bar
fragments (carriage returns); and NIfTI files whose headers carry units, so readers have nothing to guess
(antspyx printed a warning for every image with unknown time units)."""

from __future__ import annotations

import logging
import re
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from headmri.atomic import save_nifti, write_tsv
from headmri.config import TrainingConfig
from headmri.preprocess.mni import load_brain_and_mask
from headmri.slices import extract_slices
from headmri.splits import make_splits
from headmri.training import EncoderChoice, FoldJob, FoldSettings, loop, train_fold

FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"  # scripts/train_fold.py's
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


@pytest.fixture
def job_log(tmp_path, monkeypatch):
    """Logging and stderr as scripts/train_fold.py sets them up: both into one log file."""
    path = tmp_path / "job.log"
    handle = open(path, "a", buffering=1)
    handler = logging.StreamHandler(handle)
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    monkeypatch.setattr(sys, "stderr", handle)
    yield path
    root.removeHandler(handler)
    root.setLevel(previous_level)
    handle.close()


class _Batches:
    def __init__(self, n: int):
        generator = torch.Generator().manual_seed(0)
        self.batches = [(torch.randn(4, 3, generator=generator), torch.tensor([0, 1, 0, 1])) for _ in range(n)]

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


def test_a_long_epoch_in_a_log_file_gets_whole_timestamped_lines_not_a_bar(job_log, monkeypatch):
    monkeypatch.setattr(loop, "PROGRESS_LOG_SECONDS", 0.0)  # every batch counts as long
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    loop.train_epoch(model, _Batches(5), optimizer, scheduler, device=torch.device("cpu"), grad_clip=None,
                     desc="epoch 1/1", progress=True)
    text = job_log.read_text()
    assert "\r" not in text
    lines = text.splitlines()
    progress = [line for line in lines if "epoch 1/1: batch" in line]
    assert len(progress) == 4, lines  # after batches 1-4; the finished epoch is the caller's line
    assert all(TIMESTAMP.match(line) for line in lines), lines
    assert re.search(r"batch 2/5, loss \d\.\d{4}, \d+ s$", progress[1]), progress[1]


def test_progress_lines_wait_for_the_interval(job_log):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    loop.train_epoch(model, _Batches(5), optimizer, scheduler, device=torch.device("cpu"), grad_clip=None,
                     desc="epoch 1/1", progress=True)
    assert job_log.read_text() == "", "a fast epoch logs nothing before its own summary line"


def _toy_cohort(root):
    """Six tiny subjects cut into 112 px slices; the migraine ones have a bright block."""
    rng = np.random.default_rng(0)
    rows = []
    for index, group in enumerate(["HC"] * 3 + ["migraine"] * 3, 1):
        pid = f"sub-toy{index:02d}"
        volume = rng.normal(1.0, 0.1, (4, 16, 16)).astype(np.float32)
        mask = np.zeros(volume.shape, bool)
        mask[:, 2:-2, 2:-2] = True
        if group == "migraine":
            volume[:, 5:10, 5:10] *= 2.0
        volume[~mask] = 0
        nib.save(nib.Nifti1Image(volume, np.eye(4)), root / f"{pid}_brain.nii.gz")
        nib.save(nib.Nifti1Image(mask.astype(np.uint8), np.eye(4)), root / f"{pid}_mask.nii.gz")
        extract_slices(root / f"{pid}_brain.nii.gz", root / f"{pid}_mask.nii.gz", root / f"{pid}_slices.npy",
                       root / f"{pid}_slices.json", size=112, subject=pid)
        rows.append({"participant_id": pid, "group": group})
    split = make_splits(pd.DataFrame(rows), ["HC", "migraine"], folds=2, val_per_class=1, test_per_class=1, seed=3)
    write_tsv(split, root / "split.tsv")
    return root / "split.tsv"


def test_the_training_job_logs_one_line_per_epoch_and_its_device_and_threads(tmp_path, job_log):
    split = _toy_cohort(tmp_path)
    training = TrainingConfig(epochs=2, batch_size=8, lr=3e-4, warmup_epochs=0, patience=2, seed=1)
    train_fold(split, tmp_path / "out", FoldJob("toy", ("HC", "migraine"), 1, "vittinydemo"), EncoderChoice("vit_tiny_demo"),
               training, tmp_path, FoldSettings(threads=1, device="cpu", progress=True))
    text = job_log.read_text()
    assert "\r" not in text
    lines = text.splitlines()
    assert [line.split(" INFO ", 1)[1].split(":")[0] for line in lines if re.search(r"INFO epoch \d+/2: train loss", line)] \
        == ["epoch 1/2", "epoch 2/2"], lines
    assert any("on cpu with 1 CPU threads" in line for line in lines), lines
    # every line is a whole, timestamped log record
    assert all(TIMESTAMP.match(line) for line in lines), lines


def test_a_saved_nifti_has_units_and_antspy_reads_it_silently(tmp_path, capfd):
    path = tmp_path / "map.nii.gz"
    image = nib.Nifti1Image(np.zeros((4, 5, 6), np.float32), np.eye(4))
    assert image.header.get_xyzt_units() == ("unknown", "unknown")  # what every array-made image starts with
    save_nifti(image, path)
    loaded = nib.load(path)
    assert loaded.header.get_xyzt_units() == ("mm", "sec")
    import ants

    capfd.readouterr()
    ants.from_nibabel_nifti(loaded)
    assert "Warning" not in capfd.readouterr().out


def test_set_units_are_kept_and_inputs_without_units_reach_the_registration_with_them(tmp_path, capfd):
    brain = nib.Nifti1Image(np.ones((6, 6, 6), np.float32), np.eye(4))
    brain.header.set_xyzt_units("micron", "msec")
    save_nifti(brain, tmp_path / "kept.nii.gz")
    assert nib.load(tmp_path / "kept.nii.gz").header.get_xyzt_units() == ("micron", "msec")
    # a user's native brain and mask written without units (nib.save, not ours) are read for ANTs with units
    nib.save(nib.Nifti1Image(np.ones((6, 6, 6), np.float32), np.eye(4)), tmp_path / "brain.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((6, 6, 6), np.uint8), np.eye(4)), tmp_path / "mask.nii.gz")
    brain_img, mask_img = load_brain_and_mask(tmp_path / "brain.nii.gz", tmp_path / "mask.nii.gz", "sub-01")
    import ants

    capfd.readouterr()
    for img in (brain_img, mask_img):
        ants.from_nibabel_nifti(img)
    assert "Warning" not in capfd.readouterr().out
