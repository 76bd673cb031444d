"""BIDS input: participants.tsv and T1w images are matched, and every inconsistency is reported with
the subject and the file it concerns, all together, before any heavy work."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from headmri.bids import InputErrors, load_participants, read_participants, scan_dataset
from headmri.errors import InputError

GROUPS = ("HC", "migraine")


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), path)
    return path


def _dataset(root: Path, rows: list[str], images: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "participants.tsv").write_text("\n".join(["participant_id\tgroup\tage\tsite", *rows]) + "\n")
    for image in images:
        _image(root / image)
    return root


def _errors(info) -> list[InputError]:
    exc = info.value
    return exc.errors if isinstance(exc, InputErrors) else [exc]


def _only_error(info) -> InputError:
    errors = _errors(info)
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


def test_good_dataset_with_sessions_and_extra_columns(tmp_path):
    root = _dataset(
        tmp_path / "bids",
        ["sub-01\tHC\t31\tA", "sub-02\tmigraine\t\tB", "sub-03\tHC\t45\tA"],
        ["sub-01/anat/sub-01_T1w.nii.gz", "sub-02/ses-1/anat/sub-02_ses-1_T1w.nii", "sub-03/anat/sub-03_T1w.nii.gz"],
    )
    participants = load_participants(root, None, GROUPS)
    assert [(p.label, p.group) for p in participants] == [("01", "HC"), ("02", "migraine"), ("03", "HC")]
    assert participants[1].t1w.name == "sub-02_ses-1_T1w.nii"
    assert participants[0].extra == {"age": 31, "site": "A"} and participants[1].extra["age"] is None


def test_subset_selection_keeps_only_the_requested_subjects(tmp_path):
    root = _dataset(tmp_path / "bids", ["sub-01\tHC\t1\tA", "sub-02\tmigraine\t2\tA"],
                    ["sub-01/anat/sub-01_T1w.nii.gz", "sub-02/anat/sub-02_T1w.nii.gz"])
    assert [p.label for p in load_participants(root, None, GROUPS, subjects=["02"])] == ["02"]


def test_subset_selection_of_an_unknown_subject(tmp_path):
    root = _dataset(tmp_path / "bids", ["sub-01\tHC\t1\tA"], ["sub-01/anat/sub-01_T1w.nii.gz"])
    with pytest.raises(InputError) as info:
        load_participants(root, None, GROUPS, subjects=["01", "99"])
    error = _only_error(info)
    assert "sub-99" in str(error) and str(root / "participants.tsv") in str(error)
    assert "not in participants.tsv" in str(error)


def test_row_without_image(tmp_path):
    root = _dataset(tmp_path / "bids", ["sub-01\tHC\t1\tA", "sub-02\tHC\t2\tA"], ["sub-01/anat/sub-01_T1w.nii.gz"])
    with pytest.raises(InputError) as info:
        load_participants(root, None, GROUPS)
    error = _only_error(info)
    assert error.subject == "sub-02" and error.path == str(root / "participants.tsv")
    assert "no T1w image" in str(error) and "sub-02" in str(error)


def test_image_without_row(tmp_path):
    root = _dataset(tmp_path / "bids", ["sub-01\tHC\t1\tA"],
                    ["sub-01/anat/sub-01_T1w.nii.gz", "sub-05/anat/sub-05_T1w.nii.gz"])
    with pytest.raises(InputError) as info:
        load_participants(root, None, GROUPS)
    error = _only_error(info)
    assert error.subject == "sub-05" and error.path == str(root / "sub-05/anat/sub-05_T1w.nii.gz")
    assert "no row in participants.tsv" in str(error)


def test_unknown_group(tmp_path):
    root = _dataset(tmp_path / "bids", ["sub-01\tHC\t1\tA", "sub-02\tcluster\t2\tA"],
                    ["sub-01/anat/sub-01_T1w.nii.gz", "sub-02/anat/sub-02_T1w.nii.gz"])
    with pytest.raises(InputError) as info:
        load_participants(root, None, GROUPS)
    error = _only_error(info)
    assert error.subject == "sub-02" and error.path == str(root / "participants.tsv")
    assert "'cluster'" in str(error) and "configured groups" in str(error)


def test_duplicate_participant_ids(tmp_path):
    root = _dataset(tmp_path / "bids", ["sub-01\tHC\t1\tA", "sub-01\tmigraine\t2\tA"],
                    ["sub-01/anat/sub-01_T1w.nii.gz"])
    with pytest.raises(InputError) as info:
        read_participants(root / "participants.tsv", GROUPS)
    error = _only_error(info)
    assert error.subject == "sub-01" and error.path == str(root / "participants.tsv")
    assert "more than once" in str(error)


@pytest.mark.parametrize("bad_id", ["../x", "sub-../x", "sub-01_a", "01", "sub-"])
def test_ids_that_are_not_bids_labels(tmp_path, bad_id):
    root = _dataset(tmp_path / "bids", ["sub-01\tHC\t1\tA", f"{bad_id}\tHC\t2\tA"], ["sub-01/anat/sub-01_T1w.nii.gz"])
    with pytest.raises(InputError) as info:
        read_participants(root / "participants.tsv", GROUPS)
    error = _only_error(info)
    assert error.subject == bad_id and error.path == str(root / "participants.tsv")
    assert "line 3" in str(error) and "not 'sub-' followed by letters and digits" in str(error)


def test_all_problems_are_reported_together(tmp_path):
    root = _dataset(
        tmp_path / "bids",
        ["sub-01\tHC\t1\tA", "sub-02\tHC\t2\tA", "sub-03\tcluster\t3\tA"],  # sub-02: no image; sub-03: unknown group
        ["sub-01/anat/sub-01_T1w.nii.gz", "sub-03/anat/sub-03_T1w.nii.gz", "sub-09/anat/sub-09_T1w.nii.gz"],  # sub-09: no row
    )
    with pytest.raises(InputErrors) as info:
        load_participants(root, None, GROUPS)
    subjects = sorted(e.subject for e in info.value.errors)
    assert subjects == ["sub-02", "sub-03", "sub-09"]
    assert all(name in str(info.value) for name in subjects)


def test_selected_subjects_run_while_other_rows_only_warn(tmp_path):
    """config `subjects`: problems of the rows that are not selected are warnings, not stops."""
    root = _dataset(
        tmp_path / "bids",
        ["sub-01\tHC\t1\tA", "sub-02\tHC\t2\tA", "sub-03\tcluster\t3\tA", "sub-04\tmigraine\t4\tA"],
        ["sub-01/anat/sub-01_T1w.nii.gz", "sub-03/anat/sub-03_T1w.nii.gz", "sub-04/anat/sub-04_T1w.nii.gz",
         "sub-09/anat/sub-09_T1w.nii.gz"],
    )
    dataset = scan_dataset(root, None, GROUPS, subjects=["01", "sub-04"])
    assert dataset.errors == []
    assert [p.label for p in dataset.participants] == ["01", "04"]
    assert sorted(w.subject for w in dataset.warnings) == ["sub-02", "sub-03", "sub-09"]
    with pytest.raises(InputErrors) as info:  # a selected subject's own problem, and an unknown one, still stop
        load_participants(root, None, GROUPS, subjects=["01", "02", "77"])
    assert sorted(e.subject for e in info.value.errors) == ["sub-02", "sub-77"]


def test_missing_participants_table_and_columns(tmp_path):
    root = tmp_path / "bids"
    root.mkdir()
    with pytest.raises(InputError, match="participants.tsv does not exist"):
        load_participants(root, None, GROUPS)
    (root / "participants.tsv").write_text("participant_id\tdiagnosis\nsub-01\tHC\n")
    with pytest.raises(InputError, match=r"lacks the column\(s\) \['group'\]"):
        load_participants(root, None, GROUPS)


def test_dicom_folder_stands_in_for_a_missing_nifti(tmp_path):
    root = _dataset(tmp_path / "bids", ["sub-01\tHC\t1\tA", "sub-02\tHC\t2\tA"], ["sub-01/anat/sub-01_T1w.nii.gz"])
    (tmp_path / "dicom" / "sub-02").mkdir(parents=True)
    participants = load_participants(root, None, GROUPS, dicom_dir=tmp_path / "dicom")
    assert participants[1].t1w is None and participants[1].dicom_dir == tmp_path / "dicom" / "sub-02"
