"""Snakemake adapter: one subject's MNI brain -> slice tensor + geometry JSON (headmri.slices.extract)."""

import logging

from headmri.slices import extract_slices

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
p = snakemake.params
extract_slices(
    snakemake.input.brain, snakemake.input.mask, snakemake.output.slices, snakemake.output.json,
    axis=p.axis, size=p.size, min_brain_fraction=p.min_brain_fraction, percentiles=tuple(p.percentiles),
    dtype=p.dtype, subject=f"sub-{snakemake.wildcards.subject}",
)
