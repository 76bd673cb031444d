"""Snakemake adapter: every subject's QC row -> the cohort table with outliers, and its figure."""

from headmri.joblog import job_log
from headmri.qc import qc_table

with job_log(snakemake.log[0], "qc_table"):
    qc_table(snakemake.input.rows, snakemake.output.tsv, outlier_z=snakemake.params.outlier_z,
             png_out=snakemake.output.png,
             min_spread=snakemake.params.min_spread)
