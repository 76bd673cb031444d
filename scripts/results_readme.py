"""Snakemake adapter: write results/README.md, what every file under results/ is (headmri.results_readme)."""

from headmri.config import ExplainConfig
from headmri.joblog import job_log
from headmri.results_readme import RunLayout, write_results_readme

with job_log(snakemake.log[0], "results_readme"):
    write_results_readme(snakemake.output.readme, RunLayout(**snakemake.params.run), ExplainConfig(**snakemake.params.explain))
