"""Snakemake adapter: one subject of the synthetic demo cohort (image and truth files; headmri.demo)."""

from headmri.demo.cohort import make_demo_subject
from headmri.demo.effects import PlantedEffect
from headmri.joblog import job_log

with job_log(snakemake.log[0], f"make_demo_subject of sub-{snakemake.wildcards.subject}"):
    p = snakemake.params
    make_demo_subject(
        p.bids_dir,
        label=snakemake.wildcards.subject,
        group=p.group,
        seed=p.seed,
        effects=[PlantedEffect(**row) for row in p.effects],
        threads=snakemake.threads,
        atlas=snakemake.input.atlas,
        restore_brain_mean=p.restore_brain_mean,
    )
