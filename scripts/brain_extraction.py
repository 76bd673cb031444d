"""Snakemake adapter: one subject's T1w -> native-space brain and mask with deepbet (embedded backend)."""

import logging

from headmri.preprocess.embedded import extract_brain_deepbet

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
logging.captureWarnings(True)
extract_brain_deepbet(
    snakemake.input.t1w, snakemake.output.brain, snakemake.output.mask,
    subject=f"sub-{snakemake.wildcards.subject}", threads=snakemake.threads,
)
