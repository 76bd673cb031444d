"""Snakemake adapter: one source x task x model x fold -> regional activations, mean map, montage
(headmri.explain.job.explain_fold)."""

import logging
import sys

import torch

from headmri.compute import job_device
from headmri.explain.feeds import FILE_FIELDS, subject_files
from headmri.explain.job import ExplainSettings, FoldInputs, FoldKey, FoldOutputs, explain_fold

log_file = open(snakemake.log[0], "a", buffering=1)
logging.basicConfig(stream=log_file, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
logging.captureWarnings(True)  # Python warnings as timestamped log lines
sys.stderr = log_file
torch.set_num_threads(snakemake.threads)
# the device the rule claimed (resources gpu=1 only when compute.device resolved to cuda) and its threads
device, warning = job_device(snakemake.resources.get("gpu", 0))
if warning:
    logging.getLogger("explain_fold").warning(warning)
logging.getLogger("explain_fold").info("device %s, %d CPU threads (compute.threads_per_job)", device, snakemake.threads)
p, inputs, out = snakemake.params, snakemake.input, snakemake.output
given = set(inputs.keys())


def files_of(ids, prefix=""):
    """SubjectFiles of ``ids`` from the inputs named ``<prefix>slices``, ``<prefix>dseg``, ... (those given)."""
    return subject_files(ids, inputs.get(prefix + "dseg"),
                         {name: inputs[prefix + name] for name in FILE_FIELDS if prefix + name in given})


# the task's reference-class subjects: occlusion's neutral image (the job keeps the fold's training ones) and,
# with explain.controls, the controls explained for the disease class (parcellations and, for 3D models, volumes)
explain_fold(
    FoldInputs(inputs.model, inputs.split, files_of(p.subjects), files_of(p.get("controls", []), "control_"),
               inputs.get("atlas_tsv"), inputs.label_table),
    FoldKey(snakemake.wildcards.task, p.classes, snakemake.wildcards.fold),
    ExplainSettings(p.method, p.target_layer, p.statistic, p.patients, p.batch_size, p.get("method_options", {}),
                    bool(p.get("explain_controls", False)), p.get("sanity")),
    FoldOutputs(out.regions, out.mean_map, out.summary, out.montage, out.get("maps")),
    device,
)
