# Explanation stage, per task x model x fold: the registered explain.method (Grad-CAM, attention rollout,
# gradient-weighted rollout: raw maps put back on the MNI grid, the maximum (or mean) per region of each
# patient's parcellation; region occlusion: one value per region directly) of the fold's trained model on
# the fold's patients (and, with explain.controls, its controls for the disease class), and the
# model-parameter randomisation test (explain.sanity_check). Library: headmri.explain.job.explain_fold;
# methods: docs/explanations.md.

EXPLAIN_MEAN_MAP = f"{P['explain_dir']}/space-{SPACE}_desc-mean_map.nii.gz"
EXPLAIN_MONTAGE = f"{P['figures']}/task-{{task}}/montage_model-{{model}}_fold-{{fold}}.png"


def explain_patients(task):
    """Labels of the task's subjects in a disease class: the only ones a fold job may explain."""
    disease = CFG.task(task).disease_classes
    return [s for s in task_subjects(task) if SUBJECT_GROUP[s] in disease]


def explain_controls(task):
    """Labels of the task's reference-class subjects: occlusion's neutral image is the mean slice of those
    that are training subjects in the fold, and with explain.controls (or ranking: contrast) the fold's
    controls are explained too (the job reads the split for both). Otherwise none, so the jobs keep the
    inputs and params they had."""
    if CFG.explain.method != "occlusion" and not CFG.explain.explains_controls:
        return []
    reference = CFG.task(task).reference_class
    return [s for s in task_subjects(task) if SUBJECT_GROUP[s] == reference]


def explain_inputs(wildcards):
    subjects = explain_patients(wildcards.task)
    inputs = {
        "model": f"{P['train_dir']}/model.pt".format(**wildcards),
        "split": P["split"].format(task=wildcards.task),
        "dseg": expand(P["dseg_mni"], subject=subjects),
    }
    controls = explain_controls(wildcards.task)
    if is_baseline(wildcards.model):
        inputs["volumes"] = expand(P["brain_mni"], subject=subjects)
        if CFG.explain.explains_controls:
            inputs["control_volumes"] = expand(P["brain_mni"], subject=controls)
    else:
        inputs["slices"] = expand(P["slices"], subject=subjects)
        inputs["slices_json"] = expand(P["slices_json"], subject=subjects)
        if controls:
            inputs["control_slices"] = expand(P["slices"], subject=controls)
            inputs["control_slices_json"] = expand(P["slices_json"], subject=controls)
    if CFG.explain.explains_controls:  # the controls explained for the disease class need their parcellations
        inputs["control_dseg"] = expand(P["dseg_mni"], subject=controls)
    if CFG.preprocessing.parcellation == "embedded":
        inputs["atlas_tsv"] = P["atlas_tsv"]  # the regions every parcellation must hold
    return inputs


def explain_mem_mb(wildcards):
    return 3000 if is_light_encoder(ENCODER_OF_MODEL[wildcards.model]) else 12000


rule explain_fold:
    input:
        unpack(explain_inputs),
    output:
        regions=f"{P['explain_dir']}/regions.tsv",
        mean_map=EXPLAIN_MEAN_MAP,
        summary=f"{P['explain_dir']}/explain.json",
        montage=report(
            EXPLAIN_MONTAGE,
            caption="../report/montage.rst",
            category="Explanations",
            subcategory="task {task}",
            labels={"figure": "montage", "model": "{model}", "fold": "{fold}"},
        ),
        **({"maps": directory(f"{P['explain_dir']}/maps")} if CFG.explain.save_nifti else {}),
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
            if CFG.explain.method == "occlusion" or CFG.explain.explains_controls
            else {}
        ),
        # present only when on: with both off a job's params are those it had before these switches existed
        **({"explain_controls": True} if CFG.explain.explains_controls else {}),
        **({"sanity": CFG.explain.sanity_options()} if CFG.explain.sanity_check else {}),
    log:
        f"{LOGS}/explain/task-{{task}}_model-{{model}}_fold-{{fold}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/explain/task-{{task}}_model-{{model}}_fold-{{fold}}.tsv"
    threads: JOB_COMPUTE.threads  # compute.threads_per_job (train.smk); lowered to --cores by Snakemake
    resources:
        mem_mb=explain_mem_mb,
        runtime=lambda wildcards: 30 if is_light_encoder(ENCODER_OF_MODEL[wildcards.model]) else 240,
        **JOB_COMPUTE.gpu_resources,  # gpu=1 on cuda only
    conda:
        ENV_MAIN
    script:
        "../../scripts/explain_fold.py"
