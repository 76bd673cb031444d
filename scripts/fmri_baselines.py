"""Snakemake adapter: SVM and random forest on one task's RFCS vectors (headmri.fmri.jobs.baseline_job)."""

from headmri.fmri.baselines import BaselineSettings, Task
from headmri.fmri.jobs import BaselineOutputs, baseline_job
from headmri.joblog import job_log

task = snakemake.wildcards.task
with job_log(snakemake.log[0], f"fmri_baselines of task-{task}"):
    i, o, p = snakemake.input, snakemake.output, snakemake.params
    baseline_job(dict(zip(p.subjects, i.rfcs)), i.split, Task(task, tuple(p.classes), "rfcs", "split"), list(p.models),
                 BaselineSettings(seed=p.seed, importance_repeats=p.importance_repeats, fit_splits=("train", "val")),
                 BaselineOutputs(metrics=o.metrics, importance={m: o[m] for m in p.models}), i.labels, loso=p.loso)
