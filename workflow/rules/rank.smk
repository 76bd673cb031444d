# Ranking stage, per task: regional scores normalised per subject, averaged over patients (or contrasted
# with the controls) within each fold, then over folds, ranked with bootstrap intervals
# (headmri.explain.merge); the task's figures; the randomisation-test table; results/README.md. The
# main encoder (MODELS[0]) gives tables/task-T_regions.tsv and the figures; a baseline gets its own table.
# Each fold's training metrics.tsv says whether its model learned; folds that did not are left out of
# the ranking when explain.exclude_unlearned is on (the default).

MAIN_MODEL = MODELS[0]
BASELINE_MODELS = MODELS[1:]
RANKING_BASELINE = f"{P['tables']}/task-{{task}}_model-{{model}}_regions.tsv"
TASK_FIGURES = f"{P['figures']}/task-{{task}}"
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
RESULTS_README = f"{RESULTS}/README.md"
SANITY_TABLE = f"{P['tables']}/sanity.tsv"


def fold_region_tables(wildcards, model):
    return expand(f"{P['explain_dir']}/regions.tsv", task=wildcards.task, model=model, fold=FOLDS)


def fold_metrics_files(wildcards, model):
    # the learned flag of each fold (headmri.evaluation.learned), in the same fold order as the regions
    return expand(f"{P['train_dir']}/metrics.tsv", task=wildcards.task, model=model, fold=FOLDS)


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
        subcategory="task {task}",
        labels={"figure": FIGURE_CAPTIONS[name].replace("_", " "), "task": "{task}"},
    )


rule rank_regions:
    input:
        regions=lambda wildcards: fold_region_tables(wildcards, MAIN_MODEL),
        metrics=lambda wildcards: fold_metrics_files(wildcards, MAIN_MODEL),
    output:
        ranking=report(
            P["regions"],
            caption="../report/regions.rst",
            category="Regions",
            labels={"table": "ranked regions", "task": "{task}", "model": MAIN_MODEL},
        ),
    params:
        folds=FOLDS,
        top_k=CFG.explain.top_k,
        exclude_unlearned=CFG.explain.exclude_unlearned,
        options=ranking_options,
    log:
        f"{LOGS}/rank/task-{{task}}.log",
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
    output:
        ranking=report(
            RANKING_BASELINE,
            caption="../report/regions.rst",
            category="Regions",
            labels={"table": "ranked regions", "task": "{task}", "model": "{model}"},
        ),
    params:
        folds=FOLDS,
        top_k=CFG.explain.top_k,
        exclude_unlearned=CFG.explain.exclude_unlearned,
        options=ranking_options,
    log:
        f"{LOGS}/rank/task-{{task}}_model-{{model}}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_MAIN
    script:
        "../../scripts/rank_regions.py"


def figure_atlas(wildcards):
    # every parcellation lies on the same MNI grid; the first patient's is the drawing board
    return P["dseg_mni"].format(subject=explain_patients(wildcards.task)[0])


rule task_figures:
    input:
        ranking=P["regions"],
        mean_maps=lambda wildcards: expand(EXPLAIN_MEAN_MAP, task=wildcards.task, model=MAIN_MODEL, fold=FOLDS),
        atlas_dseg=figure_atlas,
        predictions=lambda wildcards: expand(
            f"{P['train_dir']}/predictions_subjects.tsv", task=wildcards.task, model=MAIN_MODEL, fold=FOLDS
        ),
        # the randomisation test of each fold, shown in the ranking figure's title
        summaries=lambda wildcards: expand(
            f"{P['explain_dir']}/explain.json", task=wildcards.task, model=MAIN_MODEL, fold=FOLDS
        ),
    output:
        **{name: figure_output(name) for name in FIGURE_FILES},
    params:
        classes=lambda wildcards: list(CFG.task(wildcards.task).classes),
        folds=FOLDS,
        top_k=CFG.explain.top_k,
        method=CFG.explain.method,
    log:
        f"{LOGS}/figures/task-{{task}}.log",
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
        summaries=expand(f"{P['explain_dir']}/explain.json", task=TASKS, model=MODELS, fold=FOLDS),
    output:
        table=report(
            SANITY_TABLE,
            caption="../report/sanity.rst",
            category="Explanations",
            labels={"table": "randomisation test"},
        ),
    params:
        task_models=[(task, model) for task in TASKS for model in MODELS for fold in FOLDS],
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
        tasks=TASKS,
        models=MODELS,
        folds=FOLDS,
        method=CFG.explain.method,
        top_k=CFG.explain.top_k,
        patients=CFG.explain.patients,
        statistic=CFG.explain.region_statistic,
        save_nifti=CFG.explain.save_nifti,
        normalisation=CFG.explain.normalisation,
        ranking=CFG.explain.ranking,
        controls=CFG.explain.explains_controls,
        bootstrap=CFG.explain.bootstrap,
        sanity_check=CFG.explain.sanity_check,
        sanity_threshold=CFG.explain.sanity_threshold,
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
    outputs = expand(P["regions"], task=TASKS)
    outputs += expand(RANKING_BASELINE, task=TASKS, model=BASELINE_MODELS)
    outputs += expand(f"{TASK_FIGURES}/{{name}}", task=TASKS, name=FIGURE_FILES.values())
    outputs += expand(EXPLAIN_MONTAGE, task=TASKS, model=MODELS, fold=FOLDS)
    if CFG.explain.save_nifti:
        outputs += expand(f"{P['explain_dir']}/maps", task=TASKS, model=MODELS, fold=FOLDS)
    if CFG.explain.sanity_check:
        outputs.append(SANITY_TABLE)
    outputs.append(RESULTS_README)
    return outputs
