"""Input checks before heavy work (issue 16): each bad image is caught by its cheap check with the
subject, the file and the problem; sessions are images of their own and runs are chosen by config
`runs`; a failed job's reason lands in its log file; all images of a subject share a split set."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from bad_inputs import BAD, make_bad

from headmri.errors import InputError
from headmri.inputs import accept, check_image, input_table, select_images, snr_estimate, unused_rows
from headmri.splits import LeakageError, check_leakage, make_split_file

from conftest import ellipsoid_head, grid_affine

SHAPE = (90, 110, 100)
AFFINE = grid_affine(SHAPE, 2.0, "LIA")


@pytest.fixture(scope="module")
def head():
    data, _ = ellipsoid_head(SHAPE, AFFINE)
    return data


def _good(path: Path, data, *, noise: float = 0.0, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    noisy = data + np.random.default_rng(seed).normal(0, noise, data.shape).astype(np.float32) if noise else data
    nib.save(nib.Nifti1Image(noisy.astype(np.float32), AFFINE), path)
    return path


def test_a_good_image_passes_with_its_snr(head, tmp_path):
    row = check_image(_good(tmp_path / "sub-01_T1w.nii.gz", head), "01", "01")
    assert row["status"] == "ok" and row["problem"] == "n/a" and float(row["snr"]) > 0
    assert (row["subject"], row["session"], row["run"], row["image"]) == ("sub-01", "n/a", "n/a", "sub-01")
    accept(row)  # passes


@pytest.mark.parametrize("kind", sorted(BAD))
def test_each_bad_image_fails_its_check_naming_subject_file_and_problem(kind, head, tmp_path):
    path = make_bad(kind, head, AFFINE, tmp_path / "sub-02" / "ses-b" / "anat" / "sub-02_ses-b_T1w.nii.gz")
    row = check_image(path, "02_ses-b", "02")
    assert row["status"] == "failed", row
    assert BAD[kind][1] in row["problem"], row["problem"]
    assert (row["subject"], row["session"], row["image"]) == ("sub-02", "ses-b", "sub-02_ses-b")
    with pytest.raises(InputError) as info:
        accept(row)
    message = str(info.value)
    assert "sub-02_ses-b" in message and str(path) in message and BAD[kind][1] in message


def _two_sessions_two_runs(root: Path, head) -> list[Path]:
    """sub-01: ses-a with run-1 (noisy) and run-2 (clean); ses-b with one image."""
    anat_a, anat_b = root / "sub-01" / "ses-a" / "anat", root / "sub-01" / "ses-b" / "anat"
    return [
        _good(anat_a / "sub-01_ses-a_run-1_T1w.nii.gz", head, noise=40.0, seed=1),
        _good(anat_a / "sub-01_ses-a_run-2_T1w.nii.gz", head, noise=2.0, seed=2),
        _good(anat_b / "sub-01_ses-b_T1w.nii.gz", head),
    ]


@pytest.mark.parametrize("runs, chosen, keys", [
    ("first", "run-1", ["01_ses-a", "01_ses-b"]),
    ("last", "run-2", ["01_ses-a", "01_ses-b"]),
    ("best", "run-2", ["01_ses-a", "01_ses-b"]),  # run-2 is the less noisy
    ("all", None, ["01_ses-a_run-1", "01_ses-a_run-2", "01_ses-b"]),
])
def test_sessions_are_images_and_runs_follow_the_policy(runs, chosen, keys, head, tmp_path):
    files = _two_sessions_two_runs(tmp_path, head)
    images = select_images("01", files, runs)
    assert [i.key for i in images] == keys
    assert [i.name for i in images][-1] == "sub-01_ses-b" and images[-1].choice == "only file"
    rows = [check_image(i.file, i.key, i.label, i.choice) for i in images] + unused_rows(images)
    table = input_table(rows)
    assert set(table["session"]) == {"ses-a", "ses-b"}
    if chosen:
        used = table[(table["session"] == "ses-a") & (table["status"] == "ok")]
        assert list(used["run"]) == [chosen] and f"(runs: {runs})" in used["choice"].iloc[0]
        skipped = table[table["status"] == "not used"]
        assert len(skipped) == 1 and skipped["run"].iloc[0] != chosen
        assert skipped["choice"].iloc[0].startswith("not chosen")
    else:
        assert (table["status"] == "ok").all() and len(table) == 3


def test_best_never_chooses_a_broken_run(head, tmp_path):
    anat = tmp_path / "sub-01" / "anat"
    broken = make_bad("truncated", head, AFFINE, anat / "sub-01_run-1_T1w.nii.gz")
    noisy = _good(anat / "sub-01_run-2_T1w.nii.gz", head, noise=40.0)
    assert snr_estimate(noisy) > 0
    (image,) = select_images("01", [broken, noisy], "best")
    assert image.file == noisy and image.others == (broken,)


def test_two_files_that_would_be_one_image_are_refused(head, tmp_path):
    anat = tmp_path / "sub-01" / "anat"
    files = [_good(anat / "sub-01_T1w.nii", head), _good(anat / "sub-01_T1w.nii.gz", head)]
    assert len(select_images("01", files, "first")) == 1
    with pytest.raises(InputError, match="would both be image sub-01"):
        select_images("01", files, "all")


def _run_job(tmp_path: Path, body: str) -> tuple[int, str]:
    """A script run as Snakemake runs an adapter (its own Python process); returns (exit code, log text)."""
    log = tmp_path / "job.log"
    code = textwrap.dedent(f"""
        from headmri.errors import InputError
        from headmri.joblog import job_log
        with job_log({str(log)!r}, "the job of sub-07"):
            {body}
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return done.returncode, log.read_text()


def test_a_failed_job_leaves_its_reason_in_its_log(tmp_path):
    code, text = _run_job(tmp_path, "raise InputError('is all zeros', subject='sub-07', path='/data/x.nii.gz')")
    assert code != 0
    assert "the job of sub-07 failed: subject sub-07, file /data/x.nii.gz: is all zeros" in text
    assert "Traceback" not in text  # an expected error: the message says it all


def test_an_unexpected_error_leaves_its_traceback_in_the_log(tmp_path):
    code, text = _run_job(tmp_path, "{}['missing']")
    assert code != 0
    assert "the job of sub-07 failed with an unexpected error" in text
    assert "Traceback" in text and "KeyError: 'missing'" in text


def test_all_sessions_of_a_subject_land_in_one_set_of_every_fold(tmp_path):
    people = [f"sub-h{i:02d}" for i in range(6)] + [f"sub-m{i:02d}" for i in range(6)]
    tsv = tmp_path / "participants.tsv"
    pd.DataFrame({"participant_id": people, "group": ["HC"] * 6 + ["migraine"] * 6}).to_csv(tsv, sep="\t", index=False)
    images = {p[4:]: p[4:] for p in people}
    for p in people[::2]:  # every other subject has two sessions
        del images[p[4:]]
        images.update({f"{p[4:]}_ses-a": p[4:], f"{p[4:]}_ses-b": p[4:]})
    split = make_split_file(tsv, tmp_path / "split.tsv", ["HC", "migraine"], images=images, folds=2,
                            val_per_class=1, test_per_class=1)
    assert set(split["label"]) == set(images) and set(split["participant_id"]) == {f"sub-{k}" for k in images}
    sets = split.groupby(["fold", "subject"])["split"].nunique()
    assert (sets == 1).all()
    assert split[split["split"] == "test"]["subject"].nunique() == 4  # 2 folds x 1 per class, subjects not images
    leaked = split.copy()
    row = leaked[(leaked["label"] == "h00_ses-b") & (leaked["fold"] == 1)].index[0]
    leaked.loc[row, "split"] = "test" if leaked.loc[row, "split"] != "test" else "train"
    with pytest.raises(LeakageError, match="sub-h00 has images in"):
        check_leakage(leaked)
