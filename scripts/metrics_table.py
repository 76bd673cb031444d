"""Snakemake adapter: per-fold metrics.tsv files -> merged table, Table-3 summary and figure (headmri.evaluation)."""

import logging

from headmri.evaluation import metrics_table

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
metrics_table(list(snakemake.input.metrics), snakemake.output.tsv, snakemake.output.md, snakemake.output.png)
