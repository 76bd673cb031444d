"""Snakemake adapter: versions of the external tools this rule's environment provides (FSL) -> JSON."""

import os

from headmri.joblog import job_log
from headmri.tool_versions import write_tool_versions

with job_log(snakemake.log[0], "provenance_tools"):
    write_tool_versions(
        snakemake.output[0],
        tools=snakemake.params.tools,
        conda_prefix=os.environ.get("CONDA_PREFIX"),
        conda_name_prefix="fsl-",
        fsldir=os.environ.get("FSLDIR"),
    )
