# Explanation stage, per source x task x model x fold: the registered explain.method (Grad-CAM, attention rollout,
# gradient-weighted rollout: raw maps put back on the MNI grid, the maximum (or mean) per region of each
# patient's label image of the source's atlas, named by the source's label table; region occlusion: one value per region directly) of the fold's trained model on
# the fold's patients (and, with explain.controls, its controls for the disease class), and the
# model-parameter randomisation test (explain.sanity_check). Library: headmri.explain.job.explain_fold;
# methods: docs/explanations.md.

EXPLAIN_MEAN_MAP = P["explain_mean_map"]
EXPLAIN_MONTAGE = P["montage"]


def explain_patients(task):
    """Labels of the task's subjects in a disease class: the only ones a fold job may explain."""
    disease = CFG.task(task).disease_classes
    return [s for s in task_subjects(task) if task_class(task, s) in disease]


def controls_needed():
    """Do explain jobs read the controls' slices: occlusion's neutral image, explained controls, or models
    trained against the controls' mean (training.reference: controls)?"""
    return CFG.explain.method == "occlusion" or CFG.explain.explains_controls or CFG.training.reference == "controls"


def explain_controls(task):
    """Labels of the task's reference-class subjects: occlusion's neutral image is the mean slice of those
    that are training subjects in the fold (so is training.reference: controls' mean), and with
    explain.controls (or ranking: contrast) the fold's controls are explained too (the job reads the split
    for both). Otherwise none, so the jobs keep the inputs and params they had."""
    if not controls_needed():
        return []
    reference = CFG.task(task).reference_class
    return [s for s in task_subjects(task) if task_class(task, s) == reference]


def explain_inputs(wildcards):
    source, model = wildcards.source, wildcards.model
    subjects = explain_patients(wildcards.task)
    inputs = {
        "model": f"{P['train_dir']}/model.pt".format(**wildcards),
        "split": P["split"].format(task=wildcards.task),
        "dseg": source_atlas(source, subjects),
        "label_table": source_label_table(source),
        **model_inputs(source, model, subjects),
    }
    controls = explain_controls(wildcards.task)
    # the controls lend occlusion its neutral image (slice models) and, with explain.controls, are explained
    if CFG.explain.explains_controls or (controls and not is_baseline(model)):
        inputs |= model_inputs(source, model, controls, prefix="control_")
    if CFG.explain.explains_controls:  # the controls explained for the disease class need their parcellations
        inputs["control_dseg"] = source_atlas(source, controls)
    return inputs | source_expected_regions(source)  # the regions every parcellation must hold


def explain_mem_mb(wildcards):
    return 3000 if is_light_encoder(ENCODER_OF_MODEL[wildcards.model]) else 12000


rule explain_fold:
    input:
        unpack(explain_inputs),
    output:
        regions=P["explain_regions"],
        mean_map=EXPLAIN_MEAN_MAP,
        summary=P["explain_summary"],
        montage=report(
            EXPLAIN_MONTAGE,
            caption="../report/montage.rst",
            category="Explanations",
            subcategory="source {source}, task {task}",
            labels={"figure": "montage", "model": "{model}", "fold": "{fold}"},
        ),
        **({"maps": directory(P["explain_maps"])} if CFG.explain.save_nifti else {}),
    params:
        subjects=lambda wildcards: [f"sub-{s}" for s in explain_patients(wildcards.task)],
        classes=lambda wildcards: list(CFG.task(wildcards.task).classes),
        # the attention and region methods explain slice models; the 3D baseline always gets Grad-CAM
        method=lambda wildcards: "gradcam" if is_baseline(wildcards.model) else CFG.explain.method,
        target_layer=CFG.explain.target_layer,
        statistic=CFG.explain.region_statistic,
        patients=CFG.explain.patients,
        batch_size=CFG.training.batch_size,
        **(
            {
                "controls": lambda wildcards: [f"sub-{s}" for s in explain_controls(wildcards.task)],
                "method_options": CFG.explain.method_options(),
            }
            if controls_needed()
            else {}
        ),
        # present only when on: with both off a job's params are those it had before these switches existed
        **({"explain_controls": True} if CFG.explain.explains_controls else {}),
        **({"sanity": CFG.explain.sanity_options()} if CFG.explain.sanity_check else {}),
    log:
        f"{LOGS}/explain/source-{{source}}_task-{{task}}_model-{{model}}_fold-{{fold}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/explain/source-{{source}}_task-{{task}}_model-{{model}}_fold-{{fold}}.tsv"
    threads: JOB_COMPUTE.threads  # compute.threads_per_job (train.smk); lowered to --cores by Snakemake
    resources:
        mem_mb=explain_mem_mb,
        runtime=lambda wildcards: 30 if is_light_encoder(ENCODER_OF_MODEL[wildcards.model]) else 240,
        **JOB_COMPUTE.gpu_resources,  # gpu=1 on cuda only
    conda:
        ENV_MAIN
    script:
        "../../scripts/explain_fold.py"
