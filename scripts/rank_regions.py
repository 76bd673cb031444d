"""Snakemake adapter: every fold's regions.tsv of one task and model -> the ranked table (headmri.explain.merge)."""

import logging

from headmri.explain.merge import write_ranking

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
ranking = write_ranking(dict(zip(snakemake.params.folds, snakemake.input.regions)), snakemake.params.top_k, snakemake.output.ranking)
logging.getLogger("rank_regions").info("%d regions ranked over folds %s", len(ranking), snakemake.params.folds)
