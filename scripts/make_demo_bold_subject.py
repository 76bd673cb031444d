"""Snakemake adapter: one subject of the synthetic BOLD cohort (run, mask, sidecar, confounds; headmri.demo.bold)."""

from headmri.demo.bold import write_demo_subject
from headmri.joblog import job_log

with job_log(snakemake.log[0], f"make_demo_bold_subject of sub-{snakemake.wildcards.subject}"):
    p = snakemake.params
    write_demo_subject(p.out_dir, snakemake.wildcards.subject, p.group, seed=p.seed, volumes=p.volumes, tr=p.tr,
                       voxel_mm=p.voxel_mm)
