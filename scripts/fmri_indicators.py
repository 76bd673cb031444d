"""Snakemake adapter: one participant's indicator maps, mask and RFCS vector (headmri.fmri.jobs.indicator_job)."""

from pathlib import Path

from headmri.fmri.bold import BoldFiles, mni_grid
from headmri.fmri.indicators import IndicatorSettings
from headmri.fmri.jobs import IndicatorOutputs, indicator_job
from headmri.joblog import job_log

subject = snakemake.wildcards.subject
with job_log(snakemake.log[0], f"fmri_indicators of sub-{subject}"):
    i, o, p = snakemake.input, snakemake.output, snakemake.params
    keys = i.keys()
    files = BoldFiles(subject=f"sub-{subject}", bold=Path(i.bold), mask=Path(i.mask),
                      confounds=Path(i.confounds) if "confounds" in keys else None,
                      sidecar=Path(i.sidecar) if "sidecar" in keys else None, space=p.space)
    settings = IndicatorSettings(**{**p.settings, "confounds": tuple(p.settings["confounds"])}, grid=mni_grid(p.voxel_mm))
    indicator_job(files, settings, IndicatorOutputs(maps={name: o[name] for name in p.maps}, mask=o.mask,
                                                    rfcs_tsv=o.rfcs_tsv))
