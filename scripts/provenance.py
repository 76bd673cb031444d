"""Snakemake adapter: the run's resolved config, code state and versions -> results/provenance/."""

from pathlib import Path

from headmri.joblog import job_log
from headmri.provenance import write_provenance

with job_log(snakemake.log[0], "provenance"):
    write_provenance(
        Path(snakemake.output.config).parent,
        config=snakemake.params.config,
        repo_dir=snakemake.params.repo_dir,
        tools=snakemake.params.tools,
    )
