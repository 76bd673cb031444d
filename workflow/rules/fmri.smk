# The fMRI branch (config `fmri`, docs/fmri.md): per image (a participant's session, or run with fmri.runs
# all: the `subject` wildcard is its key, BOLD_RUNS in common.smk), the BOLD run's header check (a row of
# results/qc/inputs.tsv, before any heavy work) and one job computing every indicator map (ALFF, mALFF,
# fALFF, ReHo, RFCS) on the MNI grid of fmri.voxel_mm, with the brain mask and the RFCS vector. Each
# indicator of fmri.sources is an image source (headmri.config.FmriConfig.indicator_sources) on AAL-116,
# so slices, splits, training, evaluation, explanations and rankings run on it unchanged. Per task, SVM
# and random forest on the RFCS vectors, on the task's split and leave-one-subject-out; their rows join
# tables/metrics.tsv. Without fmri.derivatives_dir the synthetic BOLD cohort is made, one job per subject.

if FMRI.enabled and FMRI.is_demo:
    from headmri.demo.bold import subject_paths as _bold_subject_paths

    FMRI_DEMO_FILES = {name: str(path) for name, path in _bold_subject_paths(FMRI_DEMO_DIR, "{subject}").items()}

    # the effects table, when one is set, is an input: editing it remakes the cohort
    FMRI_DEMO_EFFECTS = {"effects": FMRI.demo.effects_tsv} if FMRI.demo.effects_tsv else {}

    rule make_demo_bold_subject:
        input:
            **FMRI_DEMO_EFFECTS,
        output:
            **FMRI_DEMO_FILES,
        params:
            out_dir=FMRI_DEMO_DIR,
            group=lambda wildcards: SUBJECT_GROUP[wildcards.subject],
            seed=FMRI.demo.seed,
            volumes=FMRI.demo.volumes,
            tr=FMRI.demo.tr,
            voxel_mm=FMRI.voxel_mm,
            effects_tsv=FMRI.demo.effects_tsv,
        log:
            subject_log("demo_bold"),
        benchmark:
            subject_benchmark("demo_bold")
        threads: 1
        resources:
            mem_mb=3000,
            runtime=10,
        conda:
            ENV_MAIN
        script:
            "../../scripts/make_demo_bold_subject.py"

    # participants.tsv (which the splits read) depends on the seed and group sizes only
    rule make_demo_bold_tables:
        input:
            **FMRI_DEMO_EFFECTS,
        output:
            participants=PARTICIPANTS_TSV,
            ground_truth=f"{FMRI_DEMO_DIR}/ground_truth.tsv",
        params:
            out_dir=FMRI_DEMO_DIR,
            group_sizes=dict(FMRI.demo.group_sizes),
            seed=FMRI.demo.seed,
            effects_tsv=FMRI.demo.effects_tsv,
        log:
            f"{LOGS}/demo/make_demo_bold_tables.log",
        localrule: True
        threads: 1
        resources:
            mem_mb=1000,
            runtime=5,
        conda:
            ENV_MAIN
        script:
            "../../scripts/make_demo_bold_tables.py"


def bold_files(wildcards):
    """The run's files a job reads: BOLD and mask, and the confounds and sidecar where they are (the
    synthetic cohort's are made by its job, so they are always there)."""
    run = BOLD_RUNS[wildcards.subject]
    files = {"bold": run.bold, "mask": run.mask}
    for name in ("confounds", "sidecar"):
        path = getattr(run, name)
        if path and (FMRI.is_demo or Path(path).exists()):
            files[name] = path
    return files


rule check_bold:
    input:
        unpack(bold_files),
    output:
        row=P["bold_input_row"],
    params:
        space=FMRI.space,
        drop_volumes=FMRI.drop_volumes,
        confounds=tuple(FMRI.confounds),
        choice=lambda wildcards: BOLD_RUNS[wildcards.subject].choice,
    log:
        subject_log("check_bold"),
    group:
        "inputs"
    priority: INPUT_PRIORITY
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_MAIN
    script:
        "../../scripts/check_bold.py"


rule accept_bold:
    input:
        row=P["bold_input_row"],
        table=ancient(P["inputs"]),  # the cohort's table first, so every problem is reported
    output:
        accepted=P["bold_input_ok"],
    log:
        subject_log("accept_bold"),
    priority: INPUT_PRIORITY
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        ENV_MAIN
    script:
        "../../scripts/accept_input.py"


rule fmri_atlas:
    output:
        atlas=P["fmri_atlas"],
        labels=P["fmri_atlas_tsv"],
    params:
        voxel_mm=FMRI.voxel_mm,
    log:
        f"{LOGS}/fmri/fmri_atlas.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        ENV_MAIN
    script:
        "../../scripts/fmri_atlas.py"


FMRI_MAP_KEYS = {name: f"fmri_{name}" for name in _paths.FMRI_MAPS}


def baseline_importance(model):
    """The importance table of a baseline (``svm``, ``random_forest``), per task."""
    return P["baseline_importance"].replace("{model}", _paths.baseline_key(model))


rule fmri_indicators:
    input:
        unpack(bold_files),
        accepted=P["bold_input_ok"],
    output:
        **{name: P[key] for name, key in FMRI_MAP_KEYS.items()},
        mask=P["fmri_mask"],
        rfcs_tsv=P["fmri_rfcs_tsv"],
    params:
        space=FMRI.space,
        settings=FMRI.settings(),
        voxel_mm=FMRI.voxel_mm,
        maps=list(FMRI_MAP_KEYS),
    log:
        subject_log("fmri_indicators"),
    benchmark:
        subject_benchmark("fmri_indicators")
    threads: 1
    resources:
        mem_mb=6000,
        runtime=15,
    conda:
        ENV_MAIN
    script:
        "../../scripts/fmri_indicators.py"


rule fmri_baselines:
    input:
        split=P["split"],
        rfcs=lambda wildcards: expand(P["fmri_rfcs_tsv"], subject=task_subjects(wildcards.task)),
        labels=P["fmri_atlas_tsv"],
    output:
        metrics=P["baseline_metrics"],
        **{model: baseline_importance(model) for model in FMRI.baselines},
    params:
        subjects=lambda wildcards: [f"sub-{s}" for s in task_subjects(wildcards.task)],
        classes=lambda wildcards: list(CFG.task(wildcards.task).classes),
        models=list(FMRI.baselines),
        loso=FMRI.loso,
        seed=CFG.training.seed,
        importance_repeats=FMRI.importance_repeats,
    log:
        f"{LOGS}/fmri/baselines_task-{{task}}.log",
    benchmark:
        f"{BENCHMARKS}/fmri/baselines_task-{{task}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        ENV_MAIN
    script:
        "../../scripts/fmri_baselines.py"


def baseline_metric_files():
    """The baselines' rows for tables/metrics.tsv (none without the fMRI branch or its baselines)."""
    return expand(P["baseline_metrics"], task=TASKS) if FMRI.enabled and FMRI.baselines else []


def fmri_preprocessing_outputs():
    """Every participant's indicator maps, mask and RFCS vector, and the atlas (none with fMRI off)."""
    if not FMRI.enabled:
        return []
    keys = [*FMRI_MAP_KEYS.values(), "fmri_mask", "fmri_rfcs_tsv"]
    outputs = [path for key in keys for path in expand(P[key], subject=sorted(BOLD_RUNS))]
    outputs += [P["fmri_atlas"], P["fmri_atlas_tsv"], P["inputs"]]
    return outputs + ([f"{FMRI_DEMO_DIR}/ground_truth.tsv"] if FMRI.is_demo else [])


def fmri_outputs():
    """The above, and the baselines' importance tables."""
    if not FMRI.enabled:
        return []
    importance = [baseline_importance(model) for model in FMRI.baselines]
    return fmri_preprocessing_outputs() + baseline_metric_files() + expand(importance, task=TASKS)
