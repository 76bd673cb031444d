"""Snakemake adapter: every image's check row, and the files no image uses -> results/qc/inputs.tsv."""

import logging

import pandas as pd

from headmri.atomic import write_tsv
from headmri.inputs import input_table
from headmri.joblog import job_log

log = logging.getLogger("headmri.inputs")
with job_log(snakemake.log[0], "input_table"):
    rows = [row for path in snakemake.input.rows
            for row in pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False).to_dict("records")]
    table = input_table(rows + list(snakemake.params.unused))
    failed = table[table["status"] == "failed"]
    for _, row in failed.iterrows():
        log.error("%s, file %s: %s", row["image"], row["file"], row["problem"])
    log.info("%d images checked, %d failed", int((table["status"] != "not used").sum()), len(failed))
    write_tsv(table, snakemake.output.tsv)
