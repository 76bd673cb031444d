"""Snakemake adapter: Table 1 of the run's participants (headmri.fmri.jobs.demographics_job)."""

from headmri.fmri.jobs import demographics_job
from headmri.joblog import job_log

with job_log(snakemake.log[0], "demographics"):
    p = snakemake.params
    demographics_job(snakemake.input.participants, snakemake.output.tsv, list(p.groups), list(p.subjects))
