"""Snakemake adapter: one subject's T1w -> native-space brain and mask with FSL BET (fsl backend)."""

from headmri.joblog import job_log
from headmri.preprocess.fsl import extract_brain_bet

with job_log(snakemake.log[0], f"brain_extraction of sub-{snakemake.wildcards.subject}"):
    extract_brain_bet(
        snakemake.input.t1w, snakemake.output.brain, snakemake.output.mask,
        subject=f"sub-{snakemake.wildcards.subject}", frac=snakemake.params.bet_frac,
    )
