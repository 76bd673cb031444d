"""Snakemake adapter: one subject's T1w -> native-space brain and mask with deepbet (embedded backend)."""

from headmri.joblog import job_log
from headmri.preprocess.embedded import extract_brain_deepbet

with job_log(snakemake.log[0], f"brain_extraction of sub-{snakemake.wildcards.subject}"):
    extract_brain_deepbet(
        snakemake.input.t1w, snakemake.output.brain, snakemake.output.mask,
        subject=f"sub-{snakemake.wildcards.subject}", threads=snakemake.threads,
    )
