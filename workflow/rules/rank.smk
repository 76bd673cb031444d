# Ranking stage, per source and task: regional scores normalised per subject, averaged over patients (or contrasted
# with the controls) within each fold, then over folds, ranked with bootstrap intervals
# (headmri.explain.merge), named by the source's label table; the task's figures; the randomisation-test
# table; results/README.md. The source's first encoder gives tables/source-S_task-T_regions.tsv and the
# figures; every other model of the source (a second encoder, the 3D baseline) gets its own table.
# Each fold's training metrics.tsv says whether its model learned; folds that did not are left out of
# the ranking when explain.exclude_unlearned is on (the default).
import dataclasses


MAIN_MODEL = {source: models_of(source)[0] for source in SOURCES}
OTHER_SOURCE_MODELS = [(source, model) for source in SOURCES for model in models_of(source)[1:]]
RANKING_BASELINE = P["regions_model"]
TASK_FIGURES = P["task_figures"]
FIGURE_FILES = {
    "bars": "regions_ranked.png",
    "mean_png": "mean_map.png",
    "mean_nifti": f"space-{SPACE}_desc-mean_map.nii.gz",
    "top_regions": "top_regions.png",
    "roc": "roc.png",
    "confusion": "confusion.png",
}
FIGURE_CAPTIONS = {
    "bars": "regions_ranked",
    "mean_png": "mean_map",
    "top_regions": "top_regions",
    "roc": "roc",
    "confusion": "confusion",
}
RESULTS_README = P["results_readme"]
SANITY_TABLE = P["sanity"]


def main_model(wildcards):
    return MAIN_MODEL[wildcards.source]


def fold_files(template, wildcards, model):
    """`template` of every fold of the job's source and task for `model` (in fold order)."""
    return expand(template, source=wildcards.source, task=wildcards.task, model=model, fold=task_folds(wildcards.task))


def fold_region_tables(wildcards, model):
    return fold_files(P["explain_regions"], wildcards, model)


def fold_metrics_files(wildcards, model):
    # the learned flag of each fold (headmri.evaluation.learned), in the same fold order as the regions
    return fold_files(f"{P['train_dir']}/metrics.tsv", wildcards, model)


def ranking_options(wildcards):
    # explain.normalisation, ranking, bootstrap, seed; the task's reference class marks the control rows
    return CFG.explain.ranking_options(CFG.task(wildcards.task).reference_class)


def figure_output(name):
    path = f"{TASK_FIGURES}/{FIGURE_FILES[name]}"
    if name not in FIGURE_CAPTIONS:
        return path
    return report(
        path,
        caption=f"../report/{FIGURE_CAPTIONS[name]}.rst",
        category="Explanations" if name in ("bars", "mean_png", "top_regions") else "Classification",
        subcategory="source {source}, task {task}",
        labels={"figure": FIGURE_CAPTIONS[name].replace("_", " "), "source": "{source}", "task": "{task}"},
    )


rule rank_regions:
    input:
        regions=lambda wildcards: fold_region_tables(wildcards, main_model(wildcards)),
        metrics=lambda wildcards: fold_metrics_files(wildcards, main_model(wildcards)),
        label_table=lambda wildcards: source_label_table(wildcards.source),
    output:
        ranking=report(
            P["regions"],
            caption="../report/regions.rst",
            category="Regions",
            labels={"table": "ranked regions", "source": "{source}", "task": "{task}"},
        ),
    params:
        folds=lambda wildcards: task_folds(wildcards.task),
        top_k=CFG.explain.top_k,
        exclude_unlearned=CFG.explain.exclude_unlearned,
        options=ranking_options,
    log:
        f"{LOGS}/rank/source-{{source}}_task-{{task}}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_MAIN
    script:
        "../../scripts/rank_regions.py"


rule rank_regions_baseline:
    input:
        regions=lambda wildcards: fold_region_tables(wildcards, wildcards.model),
        metrics=lambda wildcards: fold_metrics_files(wildcards, wildcards.model),
        label_table=lambda wildcards: source_label_table(wildcards.source),
    output:
        ranking=report(
            RANKING_BASELINE,
            caption="../report/regions.rst",
            category="Regions",
            labels={"table": "ranked regions", "source": "{source}", "task": "{task}", "model": "{model}"},
        ),
    params:
        folds=lambda wildcards: task_folds(wildcards.task),
        top_k=CFG.explain.top_k,
        exclude_unlearned=CFG.explain.exclude_unlearned,
        options=ranking_options,
    log:
        f"{LOGS}/rank/source-{{source}}_task-{{task}}_model-{{model}}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_MAIN
    script:
        "../../scripts/rank_regions.py"


def figure_atlas(wildcards):
    # every label image of a source lies on the same grid; the first patient's is the drawing board
    return source_atlas(wildcards.source, explain_patients(wildcards.task)[:1])[0]


rule task_figures:
    input:
        ranking=P["regions"],
        mean_maps=lambda wildcards: fold_files(EXPLAIN_MEAN_MAP, wildcards, main_model(wildcards)),
        atlas_dseg=figure_atlas,
        predictions=lambda wildcards: fold_files(
            f"{P['train_dir']}/predictions_subjects.tsv", wildcards, main_model(wildcards)
        ),
        # the randomisation test of each fold, shown in the ranking figure's title
        summaries=lambda wildcards: fold_files(P["explain_summary"], wildcards, main_model(wildcards)),
        # whether each fold learned: the mean map, ROC and confusion matrix are over the ranking's folds
        metrics=lambda wildcards: fold_metrics_files(wildcards, main_model(wildcards)),
    output:
        **{name: figure_output(name) for name in FIGURE_FILES},
    params:
        classes=lambda wildcards: list(CFG.task(wildcards.task).classes),
        folds=lambda wildcards: task_folds(wildcards.task),
        top_k=CFG.explain.top_k,
        method=CFG.explain.method,
        exclude_unlearned=CFG.explain.exclude_unlearned,
    log:
        f"{LOGS}/figures/source-{{source}}_task-{{task}}.log",
    threads: 1
    resources:
        mem_mb=3000,
        runtime=10,
    conda:
        ENV_MAIN
    script:
        "../../scripts/task_figures.py"


rule sanity_table:
    input:
        summaries=expand_source_model_folds(P["explain_summary"]),
    output:
        table=report(
            SANITY_TABLE,
            caption="../report/sanity.rst",
            category="Explanations",
            labels={"table": "randomisation test"},
        ),
    params:
        # (source, task, model) of each summary, in the input's order
        summary_keys=[(source, task, model) for source, model in SOURCE_MODELS for task, fold in TASK_FOLDS],
    log:
        f"{LOGS}/rank/sanity.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=2,
    conda:
        ENV_MAIN
    script:
        "../../scripts/sanity_table.py"


rule results_readme:
    output:
        readme=RESULTS_README,
    params:
        # headmri.results_readme.RunLayout, and the explain section as plain values (Snakemake records those, so
        # a changed explanation setting rewrites the README)
        run=dict(sources=SOURCES, tasks=TASKS, models=MODELS, folds=sorted({fold for _, fold in TASK_FOLDS}),
                 fmri=FMRI.enabled),
        explain=dataclasses.asdict(CFG.explain),
    log:
        f"{LOGS}/results_readme.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=2,
    conda:
        ENV_MAIN
    script:
        "../../scripts/results_readme.py"


def all_explain_outputs():
    """Rankings, baseline tables, figures and montages of every task, the randomisation-test table, and
    results/README.md."""
    outputs = expand(P["regions"], source=SOURCES, task=TASKS)
    outputs += [path for source, model in OTHER_SOURCE_MODELS
                for path in expand(RANKING_BASELINE, source=source, task=TASKS, model=model)]
    outputs += expand(f"{TASK_FIGURES}/{{name}}", source=SOURCES, task=TASKS, name=FIGURE_FILES.values())
    outputs += expand_source_model_folds(EXPLAIN_MONTAGE)
    if CFG.explain.save_nifti:
        outputs += expand_source_model_folds(P["explain_maps"])
    if CFG.explain.sanity_check:
        outputs.append(SANITY_TABLE)
    outputs.append(RESULTS_README)
    return outputs
