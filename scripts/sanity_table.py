"""Snakemake adapter: every explain job's explain.json -> tables/sanity.tsv, the model-parameter randomisation
test per source, task, model, method and fold (headmri.explain.sanity)."""

import logging

from headmri.explain.sanity_table import write_sanity_table
from headmri.joblog import job_log

with job_log(snakemake.log[0], "sanity_table"):
    keys = snakemake.params.summary_keys  # (source, task, model) of each summary, in the input's order
    table = write_sanity_table([(*key, path) for key, path in zip(keys, snakemake.input.summaries)], snakemake.output.table)
    logging.getLogger("sanity_table").info("%d of %d source x task x model x fold(s) passed the randomisation test",
                                           int(table["passed"].eq(True).sum()), len(table))
