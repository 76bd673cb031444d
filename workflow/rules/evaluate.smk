# Evaluation stage: every source x task x model x fold's subject-level metrics (written by training) merged into
# one table, the mean +- sd summary in the layout of the structural paper's Table 3, and a figure; every fold's
# subject predictions too, for the pooled test rows (each fold's held-out subjects scored together).

METRICS_TABLE = P["metrics_table"]
METRICS_SUMMARY = P["metrics_summary"]
METRICS_FIGURE = P["metrics_figure"]


rule metrics_table:
    input:
        metrics=expand_source_model_folds(P["train_dir"] + "/metrics.tsv"),
        baselines=baseline_metric_files(),  # the fMRI branch's SVM and random forest (fmri.smk): rows pooled by their job
        predictions=expand_source_model_folds(P["train_dir"] + "/predictions_subjects.tsv"),
    output:
        tsv=METRICS_TABLE,
        md=METRICS_SUMMARY,
        png=report(METRICS_FIGURE, caption="../report/metrics.rst", category="Classification"),
    log:
        f"{LOGS}/evaluate/metrics_table.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_MAIN
    script:
        "../../scripts/metrics_table.py"


def all_evaluation_outputs():
    return [METRICS_TABLE, METRICS_SUMMARY, METRICS_FIGURE]


# Table 1 (headmri.fmri.demographics): the run's participants per group, for either branch's cohort.
rule demographics:
    input:
        participants=PARTICIPANTS_TSV,
    output:
        tsv=P["demographics"],
    params:
        groups=list(CFG.groups),
        subjects=sorted(set(PARTICIPANT_OF.values())),
    log:
        f"{LOGS}/evaluate/demographics.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_MAIN
    script:
        "../../scripts/demographics.py"
