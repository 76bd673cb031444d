"""Snakemake adapter: one subject of the synthetic demo cohort (image and truth files; headmri.demo)."""

import logging

from headmri.demo.cohort import make_demo_subject
from headmri.demo.effects import PlantedEffect

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
p = snakemake.params
make_demo_subject(
    p.bids_dir,
    label=snakemake.wildcards.subject,
    group=p.group,
    seed=p.seed,
    effects=[PlantedEffect(**row) for row in p.effects],
    threads=snakemake.threads,
    atlas=snakemake.input.atlas,
    restore_brain_mean=p.restore_brain_mean,
)
