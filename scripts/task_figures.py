"""Snakemake adapter: one task's ranking, mean maps and predictions -> its figures (headmri.explain.task_figures)."""

from headmri.explain.task_figures import FigureInputs, FigureOutputs, task_figures
from headmri.joblog import job_log
from headmri.templates import embedded_template

with job_log(snakemake.log[0], f"task_figures of task {snakemake.wildcards.task} (source {snakemake.wildcards.source})"):
    p, i, out = snakemake.params, snakemake.input, snakemake.output

    def by_fold(files):  # the rule lists the per-fold inputs in the order of p.folds
        return dict(zip(p.folds, files))

    inputs = FigureInputs(i.ranking, by_fold(i.mean_maps), i.atlas_dseg, by_fold(i.predictions), embedded_template().head,
                          embedded_template().brain_mask, by_fold(i.summaries), by_fold(i.metrics))
    outputs = FigureOutputs(out.bars, out.mean_nifti, out.mean_png, out.top_regions, out.roc, out.confusion)
    task_figures(snakemake.wildcards.task, p.classes, inputs, outputs, top_k=p.top_k, method=p.method,
                 exclude_unlearned=p.exclude_unlearned)
