"""Snakemake adapter: participants.tsv -> subject-level folds for one task, checked for leakage (headmri.splits)."""

from headmri.joblog import job_log
from headmri.splits import make_split_file

with job_log(snakemake.log[0], f"make_split of task-{snakemake.wildcards.task}"):
    p = snakemake.params
    make_split_file(
        snakemake.input.participants, snakemake.output.split, list(p.classes), subjects=list(p.subjects),
        images=dict(p.images), task=snakemake.wildcards.task, folds=p.folds, scheme=p.scheme,
        val_per_class=p.val_per_class, test_per_class=p.test_per_class, proportional_val=p.proportional_val,
        proportional_test=p.proportional_test, seed=p.seed, pool=dict(p.get("pool", None) or {}),
    )
