"""Snakemake adapter: AAL-116 on the fMRI grid and its label table (headmri.fmri.jobs.write_atlas)."""

from headmri.fmri.jobs import write_atlas
from headmri.joblog import job_log

with job_log(snakemake.log[0], "fmri_atlas"):
    write_atlas(snakemake.params.voxel_mm, snakemake.output.atlas, snakemake.output.labels)
