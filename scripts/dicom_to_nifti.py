"""Snakemake adapter: one subject's DICOM folder -> anonymised BIDS T1w NIfTI and sidecar (dcm2niix)."""

from headmri.dicom import dicom_to_nifti
from headmri.joblog import job_log

with job_log(snakemake.log[0], f"dicom_to_nifti of sub-{snakemake.wildcards.subject}"):
    dicom_to_nifti(snakemake.input.dicom, snakemake.output.t1w, subject=f"sub-{snakemake.wildcards.subject}")
