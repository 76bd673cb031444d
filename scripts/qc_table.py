"""Snakemake adapter: every subject's QC row -> the cohort table with outliers, and its figure."""

import logging

from headmri.qc import qc_table

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
logging.captureWarnings(True)
qc_table(snakemake.input.rows, snakemake.output.tsv, outlier_z=snakemake.params.outlier_z,
         png_out=snakemake.output.png)
