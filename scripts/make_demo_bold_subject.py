"""Snakemake adapter: one subject of the synthetic BOLD cohort (run, mask, sidecar, confounds; headmri.demo.bold)."""

from headmri.demo.bold import BoldDemoSettings, read_bold_effects, write_demo_subject
from headmri.fmri.bold import mni_grid
from headmri.joblog import job_log

with job_log(snakemake.log[0], f"make_demo_bold_subject of sub-{snakemake.wildcards.subject}"):
    p = snakemake.params
    settings = BoldDemoSettings(seed=p.seed, volumes=p.volumes, tr=p.tr, grid=mni_grid(p.voxel_mm))
    write_demo_subject(p.out_dir, snakemake.wildcards.subject, p.group, settings, read_bold_effects(p.effects_tsv))
