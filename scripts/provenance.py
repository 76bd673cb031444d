"""Snakemake adapter: the run's resolved config, code state and versions -> results/provenance/."""

import logging
from pathlib import Path

from headmri.provenance import write_provenance

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
write_provenance(
    Path(snakemake.output.config).parent,
    config=snakemake.params.config,
    repo_dir=snakemake.params.repo_dir,
    tools=snakemake.params.tools,
)
