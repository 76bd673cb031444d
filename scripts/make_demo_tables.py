"""Snakemake adapter: the synthetic demo cohort's tables from the config alone (headmri.demo): participants.tsv
and the metadata (params.part == "tables"), or ground_truth.tsv (params.part == "ground_truth")."""

from headmri.demo.cohort import write_cohort_tables, write_ground_truth
from headmri.demo.effects import PlantedEffect
from headmri.joblog import job_log

with job_log(snakemake.log[0], "make_demo_tables"):
    p = snakemake.params
    if p.part == "tables":
        write_cohort_tables(p.bids_dir, group_sizes=dict(p.group_sizes), seed=p.seed)
    else:
        write_ground_truth(p.bids_dir, effects=[PlantedEffect(**row) for row in p.effects])
