# Training stage: one job per source x task x model x fold. Fine-tunes the slice encoder (or trains the 3D ResNet-18
# baseline on whole volumes), chooses the checkpoint on validation subjects, then scores validation and
# test subjects. Outputs and their columns: docs/architecture.md; library: headmri.training.train_fold.

import os
from dataclasses import asdict

from snakemake.logging import logger

from headmri.compute import RESOLVED_DEVICE_ENV, plan as _plan_compute
from headmri.encoder_names import TORCHVISION_CNNS
from headmri.model_inputs import model_input

# Device and threads of every training and explanation job, decided once by the Snakemake process that
# plans the run (config `compute`; headmri.compute). Cluster jobs read the workflow again on their node
# and take the planner's device from the environment instead of deciding `auto` again there. Only
# jobs on cuda claim `gpu`, so CPU jobs run side by side: --cores N runs N // threads of them.
JOB_COMPUTE = _plan_compute(CFG.compute.device, CFG.compute.threads_per_job,
                            inherited=None if workflow.is_main_process else os.environ.get(RESOLVED_DEVICE_ENV),
                            gpu_partition=CFG.compute.gpu_partition)


def _global_resource(name):
    value = workflow.global_resources.get(name)
    return getattr(value, "value", value)


if workflow.is_main_process:
    os.environ[RESOLVED_DEVICE_ENV] = JOB_COMPUTE.device
    workflow.register_envvars(RESOLVED_DEVICE_ENV)
    logger.info(JOB_COMPUTE.summary(cores=_global_resource("_cores"), jobs=_global_resource("_nodes"),
                                    gpu_limit=_global_resource("gpu")))
    # where the weights come from, before any job runs: offline without them, stop now with where to
    # put them, not when the first training job starts after hours of preprocessing
    _ENCODERS = set(ENCODER_OF_MODEL.values())
    if "biomedclip" in _ENCODERS:
        from headmri.pretrained import check_available as _check_weights

        logger.info(f"biomedclip weights: {_check_weights(CFG.model.checkpoint)}")
    for _encoder in sorted(_ENCODERS & set(TORCHVISION_CNNS)):
        from headmri.pretrained import torchvision_weights as _torchvision_weights

        _weights = _torchvision_weights(_encoder, CFG.model.checkpoint, CFG.model.pretrained)
        logger.info(f"{_encoder} weights: {_weights or 'none, random initialisation (model.pretrained: false)'}")

TRAIN_FILES = list(_paths.TRAIN_OUTPUTS)  # the training job's outputs (headmri.paths)


def task_subjects(task):
    """Labels of the subjects in one of the task's classes (their group, or a class that pools it)."""
    return [s for s in SUBJECTS if task_class(task, s) is not None]


def is_baseline(model):
    return ENCODER_OF_MODEL[model] == "resnet3d"


def model_inputs(source, model, subjects, prefix=""):
    """The input files a model of `source` reads for `subjects`: the source's images for the 3D baseline,
    its slices and their geometry otherwise (names prefixed with `prefix`, e.g. `control_`)."""
    files = {
        "volumes": lambda s: source_file(SOURCE[source].image, s),
        "slices": lambda s: P["slices"].format(source=source, subject=s, size=SLICE_SIZE[source, model]),
        "slices_json": lambda s: P["slices_json"].format(source=source, subject=s, size=SLICE_SIZE[source, model]),
    }
    return {prefix + name: [files[name](s) for s in subjects] for name in model_input(ENCODER_OF_MODEL[model]).files}


def training_inputs(wildcards):
    return model_inputs(wildcards.source, wildcards.model, task_subjects(wildcards.task))


def fold_training(wildcards):
    """The job's training settings: the baseline's (per volume) for the 3D baseline, else the task's
    (headmri.config.Config.task_training: multiple-instance training for two-class tasks only)."""
    return CFG.baseline.training(CFG.training) if is_baseline(wildcards.model) else CFG.task_training(wildcards.task)


def training_mem_mb(wildcards):
    # ViT-B/16 or the 3D ResNet with a batch in flight and the optimiser state: about 12 GB of host
    # memory on CPU; the small demo ViT needs far less.
    return 4000 if is_light_encoder(ENCODER_OF_MODEL[wildcards.model]) else 16000


def training_runtime(wildcards):
    # minutes; BiomedCLIP on a GPU takes well under an hour per fold at the paper's cohort size
    return 60 if is_light_encoder(ENCODER_OF_MODEL[wildcards.model]) else 720


rule train_fold:
    input:
        unpack(training_inputs),
        split=P["split"],
    output:
        **{name.split(".")[0]: f"{P['train_dir']}/{name}" for name in TRAIN_FILES},
    params:
        subjects=lambda wildcards: [f"sub-{s}" for s in task_subjects(wildcards.task)],
        classes=lambda wildcards: list(CFG.task(wildcards.task).classes),
        encoder=lambda wildcards: ENCODER_OF_MODEL[wildcards.model],
        checkpoint=lambda wildcards: None if is_baseline(wildcards.model) else CFG.model.checkpoint,
        pretrained=lambda wildcards: False if is_baseline(wildcards.model) else CFG.model.pretrained,
        freeze=lambda wildcards: "none" if is_baseline(wildcards.model) else CFG.model.freeze,
        training=lambda wildcards: asdict(fold_training(wildcards)),
        # only the baseline's jobs see (and so rerun on) the baseline section
        voxel_size_mm=lambda wildcards: CFG.baseline.voxel_size_mm if is_baseline(wildcards.model) else None,
        aggregation=lambda wildcards: CFG.aggregation_for(fold_training(wildcards)),
        slice_size=lambda wildcards: SLICE_SIZE.get((wildcards.source, wildcards.model)),
        # compute.compile and compute.resume_every change how a job runs, not what it trains: handed over as
        # the typed ComputeConfig, which Snakemake does not record among a job's params (it records values of
        # builtin types only), so changing them reruns no finished job (tests/test_compute.py)
        compute=CFG.compute,
    log:
        f"{LOGS}/train/source-{{source}}_task-{{task}}_model-{{model}}_fold-{{fold}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/source-{{source}}_task-{{task}}_model-{{model}}_fold-{{fold}}.tsv"
    threads: JOB_COMPUTE.threads  # compute.threads_per_job; Snakemake lowers it to --cores
    resources:
        mem_mb=training_mem_mb,
        runtime=training_runtime,
        **JOB_COMPUTE.gpu_resources,  # gpu=1 on cuda only; the job runs on the device its rule claimed
    conda:
        ENV_MAIN
    script:
        "../../scripts/train_fold.py"


def all_training_outputs():
    return expand_source_model_folds(f"{P['train_dir']}/{{name}}", name=TRAIN_FILES)
