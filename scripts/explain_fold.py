"""Snakemake adapter: one task x model x fold -> regional activations, mean map, montage (headmri.explain.job)."""

import logging
import sys

import torch

from headmri.compute import job_device
from headmri.explain.job import SubjectFiles, explain_fold

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
p = snakemake.params
inputs = snakemake.input
n = len(p.subjects)
volumes = list(inputs.get("volumes", [None] * n)) if "volumes" in inputs.keys() else [None] * n
slices = list(inputs.slices) if "slices" in inputs.keys() else [None] * n
geometries = list(inputs.slices_json) if "slices_json" in inputs.keys() else [None] * n
subjects = {
    pid: SubjectFiles(slices=s, geometry=g, dseg=d, volume=v)
    for pid, s, g, d, v in zip(p.subjects, slices, geometries, inputs.dseg, volumes)
}
# the task's reference-class subjects: occlusion's neutral image (the job keeps the fold's training ones) and,
# with explain.controls, the controls explained for the disease class (parcellations and, for 3D models, volumes)
control_ids = list(p.get("controls", []))


def control_files(name):
    return list(inputs.get(name, [])) if name in inputs.keys() else [None] * len(control_ids)


controls = {
    pid: SubjectFiles(slices=s, geometry=g, dseg=d, volume=v)
    for pid, s, g, d, v in zip(control_ids, control_files("control_slices"), control_files("control_slices_json"),
                               control_files("control_dseg"), control_files("control_volumes"))
}
explain_fold(
    model_path=inputs.model,
    split_tsv=inputs.split,
    task=snakemake.wildcards.task,
    classes=p.classes,
    fold=int(snakemake.wildcards.fold),
    subjects=subjects,
    regions_tsv=snakemake.output.regions,
    mean_map=snakemake.output.mean_map,
    summary_json=snakemake.output.summary,
    montage_png=snakemake.output.montage,
    maps_dir=snakemake.output.get("maps"),
    method=p.method,
    target_layer=p.target_layer,
    statistic=p.statistic,
    patients=p.patients,
    expected_regions_tsv=inputs.get("atlas_tsv"),
    batch_size=p.batch_size,
    controls=controls,
    method_options=p.get("method_options", {}),
    explain_controls=bool(p.get("explain_controls", False)),
    sanity=p.get("sanity"),
    label_table=inputs.label_table,
    device=device,
)
