# Slices stage: per source and subject, the source's image as a stack of square 2D slices along the
# source's axis (+ geometry JSON); per task, the subject-level cross-validation split (shared by sources). Contracts: docs/architecture.md; split rules: docs/splits.md.


rule make_slices:
    input:
        brain=source_image,
        mask=source_mask,
    output:
        slices=P["slices"],
        json=P["slices_json"],
    params:
        axis=lambda wildcards: SOURCE[wildcards.source].axis,
        size=lambda wildcards: int(wildcards.size),
        min_brain_fraction=CFG.slices.min_brain_fraction,
        percentiles=list(CFG.slices.percentiles),
        window=lambda wildcards: None if SOURCE[wildcards.source].window is None else list(SOURCE[wildcards.source].window),
        dtype=CFG.slices.dtype,
        smooth_fwhm_mm=CFG.slices.smooth_fwhm_mm,
    log:
        f"{LOGS}/slices/source-{{source}}_sub-{{subject}}_size-{{size}}.log",
    benchmark:
        f"{BENCHMARKS}/slices/source-{{source}}_sub-{{subject}}_size-{{size}}.tsv"
    group:
        "preprocess"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV_MAIN
    script:
        "../../scripts/make_slices.py"


rule make_split:
    input:
        participants=PARTICIPANTS_TSV,
    output:
        split=P["split"],
    params:
        classes=lambda wildcards: list(CFG.task(wildcards.task).classes),
        subjects=sorted(set(PARTICIPANT_OF.values())),  # participants: the split is made on them
        images=PARTICIPANT_OF,  # image key -> participant: every image of a participant gets its sets
        folds=CFG.splits.folds,
        scheme=CFG.splits.scheme,
        val_per_class=CFG.splits.val_per_class,
        test_per_class=CFG.splits.test_per_class,
        proportional_val=CFG.splits.proportional_val,
        proportional_test=CFG.splits.proportional_test,
        seed=CFG.splits.seed,
        # only where a task pools groups into a class, so other runs' split jobs keep their params
        **({"pool": lambda wildcards: dict(CFG.task(wildcards.task).pool)} if any(t.pool for t in CFG.tasks) else {}),
    log:
        f"{LOGS}/split/task-{{task}}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_MAIN
    script:
        "../../scripts/make_split.py"


def all_slice_outputs():
    return [path for source in SOURCES
            for path in expand([P["slices"], P["slices_json"]], source=source, size=sizes_of(source), subject=SUBJECTS)]


def all_split_outputs():
    return expand(P["split"], task=TASKS)
