"""Snakemake adapter: one subject's DICOM folder -> anonymised BIDS T1w NIfTI and sidecar (dcm2niix)."""

import logging

from headmri.dicom import dicom_to_nifti

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
logging.captureWarnings(True)
dicom_to_nifti(snakemake.input.dicom, snakemake.output.t1w, subject=f"sub-{snakemake.wildcards.subject}")
