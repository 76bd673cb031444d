"""Snakemake adapter: one participant's BOLD headers checked -> its row of inputs.tsv (headmri.inputs.check_bold)."""

import logging
from pathlib import Path

from headmri.atomic import write_tsv
from headmri.fmri.bold import BoldFiles
from headmri.inputs import check_bold, input_table
from headmri.joblog import job_log

subject = snakemake.wildcards.subject
with job_log(snakemake.log[0], f"check_bold of sub-{subject}"):
    i, p = snakemake.input, snakemake.params
    files = BoldFiles(subject=f"sub-{subject}", bold=Path(i.bold), mask=Path(i.mask),
                      confounds=Path(i.confounds) if "confounds" in i.keys() else None,
                      sidecar=Path(i.sidecar) if "sidecar" in i.keys() else None, space=p.space)
    row = check_bold(files, subject, drop_volumes=p.drop_volumes, choice=p.choice, confounds=p.confounds)
    level = logging.INFO if row["status"] == "ok" else logging.ERROR
    logging.getLogger("headmri.inputs").log(level, "%s, file %s: %s", row["image"], row["file"],
                                            "ok" if row["status"] == "ok" else row["problem"])
    write_tsv(input_table([row]), snakemake.output.row)
