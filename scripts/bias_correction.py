"""Snakemake adapter: one subject's native-space brain -> N4 bias-corrected brain (headmri.preprocess.bias)."""

from headmri.joblog import job_log
from headmri.preprocess.bias import correct_bias_n4

with job_log(snakemake.log[0], f"bias_correction of sub-{snakemake.wildcards.subject}"):
    correct_bias_n4(snakemake.input.brain, snakemake.input.mask, snakemake.output.brain,
                    subject=f"sub-{snakemake.wildcards.subject}", threads=snakemake.threads)
