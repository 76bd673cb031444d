"""DICOM conversion with dcm2niix: the T1w series becomes the BIDS image, and the patient's name (or
ID, or birth date) appears in no output file name, sidecar, image header or log line."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from headmri.dicom import Redactor, clean_sidecar, dicom_to_nifti
from headmri.errors import InputError

pydicom = pytest.importorskip("pydicom")

IDENTIFYING = ("DOE^JANE", "DOE", "JANE", "JD4471923", "19800101")


def write_series(folder: Path, *, slices: int, size: int = 32, spacing: float = 3.5, series_number: int = 2,
                 description: str = "T1w_MPRAGE") -> None:
    """A synthetic axial MR series, one file per slice, named after the patient as some sites do."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    yy, xx = np.mgrid[:size, :size]
    for k in range(slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.PatientName, ds.PatientID, ds.PatientBirthDate = "DOE^JANE", "JD4471923", "19800101"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = "20240301"
        ds.AcquisitionTime = "101500"
        ds.Modality, ds.Manufacturer, ds.MagneticFieldStrength = "MR", "SIEMENS", 3
        ds.SeriesNumber, ds.InstanceNumber, ds.AcquisitionNumber = series_number, k + 1, 1
        ds.SeriesDescription = ds.ProtocolName = description
        ds.EchoTime, ds.RepetitionTime, ds.FlipAngle = 2.3, 2300, 8
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-size * spacing / 2, -size * spacing / 2, -slices * spacing / 2 + k * spacing]
        ds.PixelSpacing, ds.SliceThickness = [spacing, spacing], spacing
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        head = ((xx - size / 2) ** 2 + (yy - size / 2) ** 2 + (k - slices / 2) ** 2 * (size / max(slices, 1)) ** 2
                <= (size / 2.5) ** 2)
        ds.PixelData = (100 + 400 * head + k).astype(np.uint16).tobytes()
        ds.save_as(folder / f"DOE_JANE_{series_number}_{k + 1:04d}.dcm", enforce_file_format=True)


def _texts_of(folder: Path) -> list[tuple[str, str]]:
    """(name, text) of every file under a folder, gzip unpacked, bytes read as latin-1."""
    out = []
    for path in folder.rglob("*"):
        if path.is_file():
            raw = path.read_bytes()
            if path.name.endswith(".gz"):
                raw = gzip.decompress(raw)
            out.append((str(path.relative_to(folder)), raw.decode("latin-1")))
    return out


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("dicom")
    write_series(root / "sub-01", slices=32)  # the T1w
    write_series(root / "sub-01", slices=3, series_number=1, description="localizer")
    out = tmp_path_factory.mktemp("bids") / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    handler = _ListHandler()
    logging.getLogger("headmri").addHandler(handler)
    logging.getLogger("headmri").setLevel(logging.INFO)
    try:
        sidecar = dicom_to_nifti(root / "sub-01", out, subject="sub-01")
    finally:
        logging.getLogger("headmri").removeHandler(handler)
    return out, sidecar, handler.lines


class _ListHandler(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


def test_the_t1w_series_becomes_the_bids_image(converted):
    out, sidecar, _log = converted
    img = nib.load(out)
    assert img.shape == (32, 32, 32)  # the 32-slice series, not the 3-slice localiser
    assert np.allclose(img.header.get_zooms(), 3.5)
    assert sidecar == out.with_name("sub-01_T1w.json")
    assert json.loads(sidecar.read_text())["SeriesDescription"] == "T1w_MPRAGE"
    assert sorted(p.name for p in out.parent.iterdir()) == ["sub-01_T1w.json", "sub-01_T1w.nii.gz"]  # no scratch


def test_the_choice_between_several_images_is_logged(converted):
    _out, _sidecar, log = converted
    assert any("using the largest 3D one" in line for line in log), log


def test_no_identifying_value_in_names_sidecar_header_or_log(converted):
    out, _sidecar, log = converted
    assert log, "the conversion should log what it did"
    for name, text in _texts_of(out.parent.parent.parent):
        for value in IDENTIFYING:
            assert value.lower() not in name.lower(), name
            assert value not in text, f"{value} found in {name}"
    for line in log:
        for value in IDENTIFYING:
            assert value.lower() not in line.lower(), line


def test_sidecar_keys_that_identify_are_dropped():
    sidecar = {"PatientName": "DOE^JANE", "PatientID": "1", "AcquisitionDateTime": "x", "EchoTime": 0.002}
    assert clean_sidecar(sidecar) == {"EchoTime": 0.002}


def test_redactor_catches_names_in_paths_but_not_inside_words(tmp_path):
    redact = Redactor({"DOE^JANE", "DOE", "JANE"}, tmp_path / "sub-01")
    assert "DOE" not in redact(f"Convert {tmp_path}/sub-01/doe_jane_0001.dcm for DOE^JANE").upper()
    assert redact("DOES the scanner work") == "DOES the scanner work"


def test_missing_folder_names_the_subject(tmp_path):
    with pytest.raises(InputError) as info:
        dicom_to_nifti(tmp_path / "nope", tmp_path / "out" / "sub-02_T1w.nii.gz", subject="sub-02")
    assert "sub-02" in str(info.value) and "does not exist" in str(info.value)


def test_folder_without_dicom_is_an_input_error_and_writes_nothing(tmp_path):
    (tmp_path / "sub-03").mkdir()
    (tmp_path / "sub-03" / "notes.txt").write_text("no images here")
    out = tmp_path / "out" / "sub-03_T1w.nii.gz"
    with pytest.raises(InputError) as info:
        dicom_to_nifti(tmp_path / "sub-03", out, subject="sub-03")
    assert "sub-03" in str(info.value) and str(tmp_path / "sub-03") in str(info.value)
    assert list(out.parent.iterdir()) == []


def test_label_that_is_not_bids_is_refused(tmp_path):
    with pytest.raises(InputError, match="not a BIDS label"):
        dicom_to_nifti(tmp_path, tmp_path / "x.nii.gz", subject="../x")
