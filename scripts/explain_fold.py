"""Snakemake adapter: one task x model x fold -> regional activations, mean map, montage (headmri.explain.job)."""

import logging
import sys

import torch

from headmri.explain.job import SubjectFiles, explain_fold

log_file = open(snakemake.log[0], "a", buffering=1)
logging.basicConfig(stream=log_file, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
sys.stderr = log_file
torch.set_num_threads(snakemake.threads)
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
)
