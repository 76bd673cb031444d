"""Snakemake adapter: the synthetic BOLD cohort's participants.tsv and ground_truth.tsv (headmri.demo.bold)."""

from headmri.demo.bold import read_bold_effects, write_bold_tables
from headmri.joblog import job_log

with job_log(snakemake.log[0], "make_demo_bold_tables"):
    p = snakemake.params
    write_bold_tables(p.out_dir, dict(p.group_sizes), read_bold_effects(p.effects_tsv), seed=p.seed)
