"""Snakemake adapter: the synthetic demo cohort, a BIDS dataset with planted group effects (headmri.demo)."""

import logging
from pathlib import Path

from headmri.demo.cohort import make_demo_cohort
from headmri.demo.effects import read_effects

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
p = snakemake.params
make_demo_cohort(
    Path(snakemake.output.participants).parent,
    group_sizes=dict(p.group_sizes),
    seed=p.seed,
    effects=read_effects(snakemake.input.effects),
    threads=snakemake.threads,
    atlas=snakemake.input.atlas,
)
