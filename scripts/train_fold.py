"""Snakemake adapter: one source x task x model x fold -> trained model, history, predictions, metrics
(headmri.training.train_fold)."""

import logging
import sys
from pathlib import Path

from headmri.compute import job_device
from headmri.config import TrainingConfig
from headmri.model_inputs import model_input
from headmri.training import EncoderChoice, FoldJob, FoldSettings, train_fold

log_file = open(snakemake.log[0], "a", buffering=1)
logging.basicConfig(stream=log_file, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
logging.captureWarnings(True)  # Python warnings as timestamped log lines
sys.stderr = log_file  # tracebacks go to the log too; not a terminal, so no progress bars: a line per epoch
# the device the rule claimed (resources gpu=1 only when compute.device resolved to cuda); the job logs it
# with its thread count (compute.threads_per_job)
device, warning = job_device(snakemake.resources.get("gpu", 0))
if warning:
    logging.getLogger("train_fold").warning(warning)
p, w = snakemake.params, snakemake.wildcards
train_fold(
    snakemake.input.split,
    Path(snakemake.output.model).parent,
    FoldJob(w.task, p.classes, w.fold, w.model, w.source),
    EncoderChoice(p.encoder, p.checkpoint, p.pretrained, p.voxel_size_mm, p.freeze),
    TrainingConfig(**p.training),
    dict(zip(p.subjects, snakemake.input[model_input(p.encoder).main])),  # slices or volumes (headmri.model_inputs)
    FoldSettings(p.aggregation, p.slice_size, snakemake.threads, device,
                 compile=p.compute.compile, resume_every=p.compute.resume_every),
)
