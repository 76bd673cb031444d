"""Snakemake adapter: versions of the external tools this rule's environment provides (FSL) -> JSON."""

import logging
import os

from headmri.tool_versions import write_tool_versions

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
write_tool_versions(
    snakemake.output[0],
    tools=snakemake.params.tools,
    conda_prefix=os.environ.get("CONDA_PREFIX"),
    conda_name_prefix="fsl-",
    fsldir=os.environ.get("FSLDIR"),
)
