"""Snakemake adapter: read one image's header and voxels -> its row of inputs.tsv (headmri.inputs.check_image)."""

import logging

from headmri.atomic import write_tsv
from headmri.inputs import check_image, input_table
from headmri.joblog import job_log

with job_log(snakemake.log[0], f"check_input of sub-{snakemake.wildcards.subject}"):
    row = check_image(snakemake.input.t1w, snakemake.wildcards.subject, snakemake.params.label,
                      choice=snakemake.params.choice)
    level = logging.INFO if row["status"] == "ok" else logging.ERROR
    logging.getLogger("headmri.inputs").log(level, "%s, file %s: %s", row["image"], row["file"],
                                            "ok" if row["status"] == "ok" else row["problem"])
    write_tsv(input_table([row]), snakemake.output.row)
