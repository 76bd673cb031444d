"""Snakemake adapter: one subject's QC picture and row (headmri.qc.qc_subject)."""

import logging

from headmri.qc import qc_subject

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
logging.captureWarnings(True)
qc_subject(
    snakemake.input.brain, snakemake.input.mask, None, None,  # None: the embedded MNI152NLin6Asym template
    snakemake.output.png, snakemake.output.row,
    subject=f"sub-{snakemake.wildcards.subject}", original_t1w=snakemake.input.t1w,
    mask_native=snakemake.input.mask_native,
)
