"""Snakemake adapter: one subject's LUT-coded parcellation on the MNI grid (headmri.parcellation)."""

import logging

from headmri.parcellation import parcellate_subject

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
inputs = snakemake.input
parcellate_subject(
    snakemake.output.dseg,
    mask_mni=inputs.mask_mni,
    backend=snakemake.params.backend,
    atlas=inputs.get("atlas"),
    wmparc=inputs.get("wmparc"),
    affine=inputs.get("affine"),
    subject=f"sub-{snakemake.wildcards.subject}",
)
