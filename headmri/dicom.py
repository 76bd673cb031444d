"""DICOM to NIfTI with dcm2niix, anonymised: no patient name in any file name, sidecar or log line.

dcm2niix comes from the PyPI ``dcm2niix`` package (which ships the binary). It runs with BIDS
anonymisation on (``-ba y``) and a file name pattern built only from the subject label
(``-f sub-<label>_T1w``), into a scratch folder beside the output; the chosen image and its sidecar are
then moved into place atomically. Identifying values read from the DICOM headers (pydicom) are
redacted from everything we log, and identifying keys still present in the sidecar are dropped.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from headmri.atomic import atomic_path, write_json
from headmri.bids import LABEL_RE
from headmri.errors import InputError
from headmri.t1w import check_header

log = logging.getLogger(__name__)

# DICOM attributes whose values identify a person; they are redacted from logs and never kept in sidecars.
IDENTIFYING_ATTRIBUTES = (
    "PatientName", "PatientID", "OtherPatientIDs", "OtherPatientNames", "PatientBirthDate", "PatientBirthName",
    "PatientMotherBirthName", "PatientAddress", "PatientTelephoneNumbers", "ReferringPhysicianName",
    "PerformingPhysicianName", "OperatorsName", "AccessionNumber", "InstitutionAddress",
)
IDENTIFYING_SIDECAR_KEYS = IDENTIFYING_ATTRIBUTES + (
    "PatientSex", "PatientAge", "PatientWeight", "PatientSize", "AcquisitionDateTime", "AcquisitionDate",
    "StudyDate", "SeriesDate", "ContentDate", "InstitutionName", "InstitutionalDepartmentName", "DeviceSerialNumber",
    "StudyInstanceUID", "SeriesInstanceUID",
)
REDACTED = "<redacted>"


def dcm2niix_binary() -> str:
    """The dcm2niix executable: the PyPI package's binary, else one on PATH."""
    try:
        import dcm2niix

        if Path(dcm2niix.bin).is_file():
            return str(dcm2niix.bin)
    except ImportError:
        pass
    found = shutil.which("dcm2niix")
    if not found:
        raise RuntimeError("dcm2niix is not installed: pip install dcm2niix")
    return found


def dcm2niix_command(dicom_dir: str | os.PathLike, out_dir: str | os.PathLike, label: str) -> list[str]:
    """The conversion command: gzip, BIDS sidecar anonymised, a file name with the label only."""
    return [dcm2niix_binary(), "-z", "y", "-b", "y", "-ba", "y", "-f", f"sub-{label}_T1w", "-o", str(out_dir),
            str(dicom_dir)]


def identifying_values(dicom_dir: str | os.PathLike) -> set[str]:
    """Identifying header values found in the series (and the parts of person names), to redact from logs."""
    import pydicom

    values: set[str] = set()
    for path in Path(dicom_dir).rglob("*"):
        if not path.is_file():
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(IDENTIFYING_ATTRIBUTES))
        except Exception:  # not a DICOM file (a DICOMDIR index, a text note): dcm2niix skips it too
            continue
        for attribute in IDENTIFYING_ATTRIBUTES:
            value = str(ds.get(attribute, "") or "").strip()
            if value:
                values.add(value)
                values.update(part for part in re.split(r"[\^=\s,]+", value) if len(part) >= 2)
    return values


class Redactor:
    """Redacts identifying values, and the file names under the input folder, from text meant for a log.

    A value is matched as a whole token (not inside a longer run of letters or digits), case-insensitively,
    so "DOE" is caught in "DOE^JANE" and "doe_jane.dcm" but not in "DOES". File names under the folder
    are replaced because sites often name DICOM files after the patient.
    """

    def __init__(self, values: set[str], dicom_dir: Path):
        words = sorted(values, key=len, reverse=True)  # longest first: "DOE^JANE" before "DOE"
        alternatives = [rf"(?<![A-Za-z0-9]){re.escape(w)}(?![A-Za-z0-9])" for w in words]
        folders = {str(dicom_dir), str(dicom_dir.resolve())}
        alternatives += [rf"(?<={re.escape(f)}{re.escape(os.sep)})[^\s'\"]+" for f in sorted(folders, key=len, reverse=True)]
        self._pattern = re.compile("|".join(alternatives), re.IGNORECASE)

    def __call__(self, text: str) -> str:
        return self._pattern.sub(REDACTED, text)


def _is_3d(shape: tuple[int, ...]) -> bool:
    spatial = [n for n in shape[:3]]
    extra = [n for n in shape[3:] if n != 1]
    return len(spatial) == 3 and min(spatial) > 1 and not extra


def choose_t1w(candidates: list[Path], subject: str, dicom_dir) -> Path:
    """The largest 3D image among dcm2niix's outputs (localisers and 2D or 4D series are passed over)."""
    sizes = {}
    for path in candidates:
        shape = nib.load(path).shape
        if _is_3d(shape):
            sizes[path] = int(np.prod(shape[:3]))
    if not sizes:
        raise InputError(f"dcm2niix produced no 3D image (got {[nib.load(p).shape for p in candidates]})",
                         subject=subject, path=dicom_dir)
    chosen = max(sizes, key=sizes.get)
    if len(candidates) > 1:
        log.warning("%s: dcm2niix produced %d images %s; using the largest 3D one, %s (%d voxels)", subject,
                    len(candidates), [p.name for p in candidates], chosen.name, sizes[chosen])
    return chosen


def clean_sidecar(sidecar: dict) -> dict:
    """The sidecar without identifying keys (dcm2niix's -ba y removes most; this catches the rest)."""
    return {k: v for k, v in sidecar.items() if k not in IDENTIFYING_SIDECAR_KEYS}


def dicom_to_nifti(dicom_dir: str | os.PathLike, out_nii: str | os.PathLike, *, subject: str) -> Path:
    """Convert one subject's T1w DICOM folder to ``out_nii`` (.nii.gz) plus its ``.json`` sidecar.

    Returns the sidecar path. Raises InputError naming the subject when the folder is missing, holds no
    convertible series, or converts to something that cannot be a head T1w.
    """
    label = subject[4:] if subject.startswith("sub-") else subject
    if not LABEL_RE.match(label):
        raise InputError("is not a BIDS label (letters and digits only)", subject=subject, path=dicom_dir)
    participant = f"sub-{label}"
    dicom_dir = Path(dicom_dir)
    if not dicom_dir.is_dir():
        raise InputError("the DICOM folder does not exist", subject=participant, path=dicom_dir)
    out_nii = Path(out_nii)
    if not out_nii.name.endswith(".nii.gz"):
        raise ValueError(f"out_nii must end in .nii.gz, got {out_nii}")
    sidecar_out = out_nii.with_name(out_nii.name[: -len(".nii.gz")] + ".json")
    redact = Redactor(identifying_values(dicom_dir), dicom_dir)
    out_nii.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".dcm2niix.", dir=out_nii.parent))
    try:
        command = dcm2niix_command(dicom_dir, scratch, label)
        log.info("%s: converting DICOM with %s", participant, redact(" ".join(command)))
        done = subprocess.run(command, capture_output=True, text=True, errors="replace")
        for line in (done.stdout + done.stderr).splitlines():
            if line.strip():
                log.info("dcm2niix: %s", redact(line))
        images = sorted(scratch.glob("*.nii.gz"))
        if done.returncode != 0 or not images:
            raise InputError(f"dcm2niix found no convertible image (exit status {done.returncode}); see the log",
                             subject=participant, path=dicom_dir)
        chosen = choose_t1w(images, participant, dicom_dir)
        facts = check_header(chosen, subject=participant)
        log.info("%s: T1w %s, voxels %s mm, orientation %s%s", participant, facts.shape,
                 tuple(round(v, 3) for v in facts.voxel_mm), facts.orientation, " (oblique)" if facts.oblique else "")
        sidecar_in = chosen.with_name(chosen.name[: -len(".nii.gz")] + ".json")
        sidecar = json.loads(sidecar_in.read_text()) if sidecar_in.exists() else {}
        dropped = sorted(set(sidecar) & set(IDENTIFYING_SIDECAR_KEYS))
        if dropped:
            log.info("%s: dropped identifying sidecar keys %s", participant, dropped)
        with atomic_path(out_nii) as tmp_nii:
            shutil.move(chosen, tmp_nii)
            write_json(clean_sidecar(sidecar), sidecar_out)
        return sidecar_out
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
