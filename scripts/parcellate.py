"""Snakemake adapter: one subject's LUT-coded parcellation on the MNI grid from the embedded atlas
(embedded backend; headmri.backends)."""

from headmri.joblog import job_log
from headmri.parcellation.subject import parcellate_embedded

with job_log(snakemake.log[0], f"parcellate of sub-{snakemake.wildcards.subject}"):
    parcellate_embedded(
        snakemake.output.dseg, mask_mni=snakemake.input.mask_mni, atlas=snakemake.input.atlas,
        subject=f"sub-{snakemake.wildcards.subject}",
    )
