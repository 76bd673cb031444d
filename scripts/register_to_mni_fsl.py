"""Snakemake adapter: native brain and mask -> FSL's MNI152_T1_1mm_brain with FLIRT (fsl backend)."""

import logging

from headmri.preprocess.fsl import register_flirt

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
logging.captureWarnings(True)
out = snakemake.output
register_flirt(
    snakemake.input.brain, snakemake.input.mask, None, None,  # None: $FSLDIR's MNI152_T1_1mm_brain and mask
    out.brain, out.mask, out.xfm, out.affine, subject=f"sub-{snakemake.wildcards.subject}",
)
