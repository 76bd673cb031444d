"""Snakemake adapter: one task x model x fold -> trained model, history, predictions, metrics (headmri.training)."""

import logging
import sys
from pathlib import Path

from headmri.compute import job_device
from headmri.config import ComputeConfig, TrainingConfig
from headmri.model_inputs import model_input
from headmri.training import train_fold

log_file = open(snakemake.log[0], "a", buffering=1)
logging.basicConfig(stream=log_file, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
logging.captureWarnings(True)  # Python warnings as timestamped log lines
sys.stderr = log_file  # tracebacks go to the log too; not a terminal, so no progress bars: a line per epoch
# the device the rule claimed (resources gpu=1 only when compute.device resolved to cuda); the job logs it
# with its thread count (compute.threads_per_job)
device, warning = job_device(snakemake.resources.get("gpu", 0))
if warning:
    logging.getLogger("train_fold").warning(warning)
# how, not what: read from the config, so changing them reruns no finished job (headmri.config.ComputeConfig)
compute = ComputeConfig(**snakemake.config["compute"])
p = snakemake.params
given = model_input(p.encoder).main  # slices or volumes: what the encoder takes (headmri.model_inputs)
files = dict(zip(p.subjects, snakemake.input[given]))
train_fold(
    snakemake.input.split,
    Path(snakemake.output.model).parent,
    task=snakemake.wildcards.task,
    source=snakemake.wildcards.source,
    classes=p.classes,
    fold=int(snakemake.wildcards.fold),
    model_name=snakemake.wildcards.model,
    encoder=p.encoder,
    training=TrainingConfig(**p.training),
    **{given: files},
    checkpoint=p.checkpoint,
    pretrained=p.pretrained,
    freeze=p.freeze,
    aggregation=p.aggregation,
    slice_size=p.slice_size,
    **({"voxel_size_mm": p.voxel_size_mm} if p.voxel_size_mm is not None else {}),
    threads=snakemake.threads,
    device=device,
    compile=compute.compile,
    resume_every=compute.resume_every,
)
