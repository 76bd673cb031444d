"""Snakemake adapter: every fold's regions.tsv (and its training metrics.tsv, for the learned flag) of one
source, task and model -> the ranked table, named by the source's label table (headmri.explain.merge)."""

import logging

from headmri.explain.merge import RankingOptions, write_ranking
from headmri.joblog import job_log
from headmri.labels import load as load_label_table

with job_log(snakemake.log[0], f"rank_regions of task {snakemake.wildcards.task} (source {snakemake.wildcards.source})"):
    folds = snakemake.params.folds
    options = RankingOptions(**snakemake.params.options)
    ranking = write_ranking(
        dict(zip(folds, snakemake.input.regions)),
        snakemake.params.top_k,
        snakemake.output.ranking,
        metrics_paths=dict(zip(folds, snakemake.input.metrics)),
        exclude_unlearned=snakemake.params.exclude_unlearned,
        options=options,
        labels=load_label_table(snakemake.input.label_table),
    )
    logging.getLogger("rank_regions").info(
        "%d regions ranked by %s (%s normalisation, %d bootstrap replicates) over %d of folds %s (%d of them learned)",
        len(ranking), options.ranking, options.normalisation, options.bootstrap,
        int(ranking["n_folds"].max()) if len(ranking) else 0, folds, int(ranking["n_learned"].max()) if len(ranking) else 0,
    )
