"""Snakemake adapter: one task x model x fold -> trained model, history, predictions, metrics (headmri.training)."""

import logging
import sys
from pathlib import Path

from headmri.config import TrainingConfig
from headmri.training import train_fold

log_file = open(snakemake.log[0], "a", buffering=1)
logging.basicConfig(stream=log_file, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
sys.stderr = log_file  # the progress bar goes to the log too
p = snakemake.params
inputs = snakemake.input.get("volumes") or snakemake.input.slices
files = dict(zip(p.subjects, inputs))
train_fold(
    snakemake.input.split,
    Path(snakemake.output.model).parent,
    task=snakemake.wildcards.task,
    classes=p.classes,
    fold=int(snakemake.wildcards.fold),
    model_name=snakemake.wildcards.model,
    encoder=p.encoder,
    training=TrainingConfig(**p.training),
    **({"volumes": files} if "volumes" in snakemake.input.keys() else {"slices": files}),
    checkpoint=p.checkpoint,
    pretrained=p.pretrained,
    aggregation=p.aggregation,
    slice_size=p.slice_size,
    **({"voxel_size_mm": p.voxel_size_mm} if p.voxel_size_mm is not None else {}),
    threads=snakemake.threads,
)
