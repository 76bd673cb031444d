"""Snakemake adapter: per-fold metrics.tsv files -> merged table, Table-3 summary and figure (headmri.evaluation)."""


from headmri.evaluation import metrics_table
from headmri.joblog import job_log

with job_log(snakemake.log[0], "metrics_table"):
    metrics_table(list(snakemake.input.metrics), snakemake.output.tsv, snakemake.output.md, snakemake.output.png,
                  prediction_files=list(snakemake.input.predictions),
                  baseline_metric_files=list(snakemake.input.baselines))
