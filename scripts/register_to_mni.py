"""Snakemake adapter: native brain and mask -> MNI152NLin6Asym with antspyx (embedded backend)."""

from headmri.joblog import job_log
from headmri.preprocess.embedded import register_ants

with job_log(snakemake.log[0], f"register_to_mni of sub-{snakemake.wildcards.subject}"):
    out = snakemake.output
    register_ants(
        snakemake.input.brain, snakemake.input.mask, None, None,  # None: the embedded template
        out.brain, out.mask, out.xfm, out.affine,
        transform=snakemake.params.transform, subject=f"sub-{snakemake.wildcards.subject}", threads=snakemake.threads,
    )
