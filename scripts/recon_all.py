"""Snakemake adapter: Nipype's recon-all command line for one subject, written as a script that the rule
recon_all runs inside the FreeSurfer container (headmri.parcellation.freesurfer)."""

import logging

from headmri.joblog import job_log
from headmri.parcellation.freesurfer import write_recon_all_script

with job_log(snakemake.log[0], f"recon_all_command of sub-{snakemake.wildcards.subject}"):
    p = snakemake.params
    cmdline = write_recon_all_script(
        snakemake.output.script, t1w=snakemake.input.t1w, subject_id=p.subject_id, subjects_dir=p.subjects_dir,
        threads=p.threads,
    )
    logging.info("recon-all command: %s", cmdline)
