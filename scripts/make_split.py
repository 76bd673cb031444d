"""Snakemake adapter: participants.tsv -> subject-level folds for one task, checked for leakage (headmri.splits)."""

import logging

from headmri.splits import make_split_file

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
p = snakemake.params
make_split_file(
    snakemake.input.participants, snakemake.output.split, list(p.classes), subjects=list(p.subjects), images=dict(p.images),
    task=snakemake.wildcards.task, folds=p.folds, scheme=p.scheme, val_per_class=p.val_per_class,
    test_per_class=p.test_per_class, proportional_val=p.proportional_val, proportional_test=p.proportional_test,
    seed=p.seed,
)
