"""Snakemake adapter: one task's ranking, mean maps and predictions -> its figures (headmri.explain.task_figures)."""


from headmri.explain.task_figures import task_figures
from headmri.joblog import job_log
from headmri.templates import embedded_template

with job_log(snakemake.log[0], f"task_figures of task {snakemake.wildcards.task} (source {snakemake.wildcards.source})"):
    p = snakemake.params
    out = snakemake.output
    task_figures(
        task=snakemake.wildcards.task,
        classes=p.classes,
        ranking_tsv=snakemake.input.ranking,
        fold_mean_maps=list(snakemake.input.mean_maps),
        atlas_dseg=snakemake.input.atlas_dseg,
        predictions=dict(zip(p.folds, snakemake.input.predictions)),
        top_k=p.top_k,
        method=p.method,
        template=embedded_template().head,
        brain_mask=embedded_template().brain_mask,
        out_bars=out.bars,
        out_mean_nifti=out.mean_nifti,
        out_mean_png=out.mean_png,
        out_top_regions=out.top_regions,
        out_roc=out.roc,
        out_confusion=out.confusion,
        summaries=list(snakemake.input.get("summaries", [])),
    )
