"""Snakemake adapter: one subject's MNI brain -> slice tensor + geometry JSON (headmri.slices.extract)."""


from headmri.joblog import job_log
from headmri.slices import extract_slices

with job_log(snakemake.log[0], f"make_slices of sub-{snakemake.wildcards.subject} (source {snakemake.wildcards.source})"):
    p = snakemake.params
    extract_slices(
        snakemake.input.brain, snakemake.input.mask, snakemake.output.slices, snakemake.output.json,
        axis=p.axis, size=p.size, min_brain_fraction=p.min_brain_fraction, percentiles=tuple(p.percentiles),
        window=None if p.window is None else tuple(p.window),
        dtype=p.dtype, subject=f"sub-{snakemake.wildcards.subject}", smooth_fwhm_mm=p.smooth_fwhm_mm,
    )
