"""Snakemake adapter: one subject's recon-all wmparc moved to the MNI grid in LUT codes (freesurfer backend;
headmri.backends)."""

from headmri.joblog import job_log
from headmri.parcellation.subject import parcellate_freesurfer

with job_log(snakemake.log[0], f"parcellate of sub-{snakemake.wildcards.subject}"):
    inputs = snakemake.input
    parcellate_freesurfer(
        snakemake.output.dseg, mask_mni=inputs.mask_mni, wmparc=inputs.wmparc, affine=inputs.affine,
        subject=f"sub-{snakemake.wildcards.subject}",
    )
