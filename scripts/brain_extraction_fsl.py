"""Snakemake adapter: one subject's T1w -> native-space brain and mask with FSL BET (fsl backend)."""

import logging

from headmri.preprocess.fsl import extract_brain_bet

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
logging.captureWarnings(True)
extract_brain_bet(
    snakemake.input.t1w, snakemake.output.brain, snakemake.output.mask,
    subject=f"sub-{snakemake.wildcards.subject}", frac=snakemake.params.bet_frac,
)
