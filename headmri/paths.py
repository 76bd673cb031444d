"""Where every output lives: the one path table of the workflow, and how results/README.md shows it.

``workflow/rules/common.smk`` takes its ``P`` from ``path_table(results_dir)``; ``headmri.results_readme``
writes results/README.md from the same table (``shown``), and the training job names its outputs from
``TRAIN_OUTPUTS``. Names follow BIDS derivatives (``sub-``, ``source-``, ``task-``, ``model-``, ``fold-``
entities; ``space-`` from ``headmri.templates.SPACE``). Imports no torch: the workflow reads it when it
plans jobs.
"""

from __future__ import annotations

from headmri.templates import SPACE

FMRI_MAPS = ("alff", "malff", "falff", "reho", "rfcs")  # headmri.fmri.indicators.MAPS (tests keep them equal)
TRAIN_OUTPUTS = ("model.pt", "history.tsv", "predictions_slices.tsv", "predictions_subjects.tsv", "metrics.tsv")
# the letter results/README.md shows for each wildcard
LETTERS = {"subject": "X", "source": "S", "size": "N", "task": "T", "model": "M", "fold": "K"}


def path_table(results: str = "results", fmri_space: str = SPACE) -> dict[str, str]:
    """Every output's path template (Snakemake wildcards in braces) under ``results``; the fMRI maps and
    their AAL atlas carry ``fmri_space`` (config ``fmri.space``, the space the runs were declared in)."""
    preproc = f"{results}/preproc/sub-{{subject}}/anat/sub-{{subject}}"
    train = f"{results}/train/source-{{source}}/task-{{task}}/model-{{model}}/fold-{{fold}}"
    explain = f"{results}/explain/source-{{source}}/task-{{task}}/model-{{model}}/fold-{{fold}}"
    func = f"{results}/fmri/sub-{{subject}}/func/sub-{{subject}}"
    figures = f"{results}/figures"
    task_figures = f"{figures}/source-{{source}}/task-{{task}}"
    return {
        # input checks (one row per image, the cohort's table, and the acceptance heavy jobs wait for)
        "input_row": f"{results}/qc/inputs/sub-{{subject}}_inputs.tsv",
        "input_ok": f"{results}/qc/inputs/sub-{{subject}}_accepted.tsv",
        "inputs": f"{results}/qc/inputs.tsv",
        "bold_input_row": f"{results}/qc/inputs/sub-{{subject}}_bold_inputs.tsv",
        "bold_input_ok": f"{results}/qc/inputs/sub-{{subject}}_bold_accepted.tsv",
        # native space
        "brain_native": preproc + "_desc-brain_T1w.nii.gz",
        "mask_native": preproc + "_desc-brain_mask.nii.gz",
        "brain_biascorr": preproc + "_desc-biascorr_T1w.nii.gz",  # preprocessing.bias_correction: n4
        # registration: the backend's own transform file, plus a backend-independent 4x4 RAS world affine
        "xfm": preproc + f"_from-T1w_to-{SPACE}_mode-image_xfm.mat",
        "affine": preproc + f"_from-T1w_to-{SPACE}_affine.txt",
        # MNI space (template grid 182x218x182, 1 mm)
        "brain_mni": preproc + f"_space-{SPACE}_desc-brain_T1w.nii.gz",
        "mask_mni": preproc + f"_space-{SPACE}_desc-brain_mask.nii.gz",
        "dseg_mni": preproc + f"_space-{SPACE}_desc-wmparc_dseg.nii.gz",
        # QC
        "qc_png": f"{results}/qc/sub-{{subject}}_qc.png",
        "qc_row": f"{results}/qc/subjects/sub-{{subject}}_qc.tsv",
        "qc_table": f"{results}/qc/preprocessing.tsv",
        # embedded atlas (built once)
        "atlas": f"{results}/atlas/atlas-DKwm_space-{SPACE}_dseg.nii.gz",
        "atlas_tsv": f"{results}/atlas/atlas-DKwm_space-{SPACE}_dseg.tsv",
        # the fMRI branch (docs/fmri.md): indicator maps per subject on the MNI grid of fmri.voxel_mm, the
        # mask they were computed in, the RFCS vector; AAL-116 on that grid (one for every subject)
        **{f"fmri_{name}": func + f"_space-{fmri_space}_desc-{name}_boldmap.nii.gz" for name in FMRI_MAPS},
        "fmri_mask": func + f"_space-{fmri_space}_desc-brain_mask.nii.gz",
        "fmri_rfcs_tsv": func + "_atlas-AAL_desc-rfcs_values.tsv",
        "fmri_atlas": f"{results}/atlas/atlas-AAL_space-{fmri_space}_dseg.nii.gz",
        "fmri_atlas_tsv": f"{results}/atlas/atlas-AAL_space-{fmri_space}_dseg.tsv",
        # The back half is keyed by image source (config `sources`, docs/architecture.md "Image sources").
        # one slice set per size its encoders take (sources[].size, or each encoder's input size)
        "slices": f"{results}/slices/source-{{source}}/sub-{{subject}}_size-{{size}}_slices.npy",
        "slices_json": f"{results}/slices/source-{{source}}/sub-{{subject}}_size-{{size}}_slices.json",
        # splits (by subject, shared by every source so their folds hold the same subjects)
        "split": f"{results}/splits/task-{{task}}.tsv",
        # training and evaluation
        "train_dir": train,
        "tables": f"{results}/tables",
        "metrics_table": f"{results}/tables/metrics.tsv",
        "metrics_summary": f"{results}/tables/metrics_summary.md",
        "metrics_figure": f"{figures}/metrics.png",
        # the fMRI baselines on the RFCS vectors (per task; their rows join metrics.tsv) and their importances
        "baseline_metrics": f"{results}/baselines/task-{{task}}/metrics.tsv",
        "baseline_importance": f"{results}/tables/source-rfcs_task-{{task}}_model-{{model}}_importance.tsv",
        "demographics": f"{results}/tables/demographics.tsv",
        # explanations and rankings
        "explain_dir": explain,
        "explain_regions": f"{explain}/regions.tsv",
        "explain_mean_map": f"{explain}/space-{SPACE}_desc-mean_map.nii.gz",
        "explain_summary": f"{explain}/explain.json",
        "explain_maps": f"{explain}/maps",
        "regions": f"{results}/tables/source-{{source}}_task-{{task}}_regions.tsv",
        "regions_model": f"{results}/tables/source-{{source}}_task-{{task}}_model-{{model}}_regions.tsv",
        "sanity": f"{results}/tables/sanity.tsv",
        "figures": figures,
        "task_figures": task_figures,
        "montage": f"{task_figures}/montage_model-{{model}}_fold-{{fold}}.png",
        "results_readme": f"{results}/README.md",
        "provenance": f"{results}/provenance",
    }


def model_key(encoder: str) -> str:
    """The ``model-<key>`` path entity of an encoder name: letters and digits only (``timm:vit_small`` ->
    ``vitsmall``, ``cnn_demo`` -> ``cnndemo``)."""
    return "".join(ch for ch in encoder.split(":")[-1].lower() if ch.isalnum())


def baseline_key(name: str) -> str:
    """The ``model`` value (``model-<key>`` entity) of an fMRI baseline: ``random_forest`` -> ``randomforest``."""
    return "".join(ch for ch in name if ch.isalnum())


def shown(key: str, suffix: str = "") -> str:
    """A path of the table as results/README.md shows it: relative to results/, each wildcard a letter."""
    path = path_table("@")[key].removeprefix("@/") + suffix
    for wildcard, letter in LETTERS.items():
        path = path.replace("{" + wildcard + "}", letter)
    return path
