"""Snakemake adapter: Nipype's recon-all command line for one subject, written as a script that the rule
recon_all runs inside the FreeSurfer container (headmri.parcellation.freesurfer)."""

import logging

from headmri.parcellation.freesurfer import write_recon_all_script

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
p = snakemake.params
cmdline = write_recon_all_script(
    snakemake.output.script, t1w=snakemake.input.t1w, subject_id=p.subject_id, subjects_dir=p.subjects_dir,
    threads=p.threads,
)
logging.info("recon-all command: %s", cmdline)
