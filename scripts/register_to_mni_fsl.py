"""Snakemake adapter: native brain and mask -> FSL's MNI152_T1_1mm_brain with FLIRT (fsl backend)."""

from headmri.joblog import job_log
from headmri.preprocess.fsl import register_flirt

with job_log(snakemake.log[0], f"register_to_mni of sub-{snakemake.wildcards.subject}"):
    out = snakemake.output
    register_flirt(
        snakemake.input.brain, snakemake.input.mask, None, None,  # None: $FSLDIR's MNI152_T1_1mm_brain and mask
        out.brain, out.mask, out.xfm, out.affine, subject=f"sub-{snakemake.wildcards.subject}",
    )
