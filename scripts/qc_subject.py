"""Snakemake adapter: one subject's QC picture and row (headmri.qc.qc_subject)."""

from headmri.joblog import job_log
from headmri.qc import qc_subject

with job_log(snakemake.log[0], f"qc_subject of sub-{snakemake.wildcards.subject}"):
    qc_subject(
        snakemake.input.brain, snakemake.input.mask, None, None,  # None: the embedded MNI152NLin6Asym template
        snakemake.output.png, snakemake.output.row,
        subject=f"sub-{snakemake.wildcards.subject}", original_t1w=snakemake.input.t1w,
        mask_native=snakemake.input.mask_native,
    )
