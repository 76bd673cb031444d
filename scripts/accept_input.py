"""Snakemake adapter: an image whose input check failed stops here, with the problem in this job's log."""

import pandas as pd

from headmri.atomic import write_tsv
from headmri.inputs import accept
from headmri.joblog import job_log

with job_log(snakemake.log[0], f"accept_input of sub-{snakemake.wildcards.subject}"):
    row = pd.read_csv(snakemake.input.row, sep="\t", dtype=str, keep_default_na=False)
    accept(row.iloc[0])
    write_tsv(row, snakemake.output.accepted)
