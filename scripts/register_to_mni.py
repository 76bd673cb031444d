"""Snakemake adapter: native brain and mask -> MNI152NLin6Asym with antspyx (embedded backend)."""

import logging

from headmri.preprocess.embedded import register_ants

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
logging.captureWarnings(True)
out = snakemake.output
register_ants(
    snakemake.input.brain, snakemake.input.mask, None, None,  # None: the embedded template
    out.brain, out.mask, out.xfm, out.affine,
    transform=snakemake.params.transform, subject=f"sub-{snakemake.wildcards.subject}", threads=snakemake.threads,
)
