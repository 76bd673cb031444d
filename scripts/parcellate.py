"""Snakemake adapter: one subject's LUT-coded parcellation on the MNI grid (headmri.parcellation)."""

from headmri.joblog import job_log
from headmri.parcellation import parcellate_subject

with job_log(snakemake.log[0], f"parcellate of sub-{snakemake.wildcards.subject}"):
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
