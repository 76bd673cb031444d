"""``results/README.md``: what every file under ``results/`` is, written by the workflow for this run.

The file names come from the same path templates as the rules (``workflow/rules/common.smk``); the text
names this run's tasks, models and folds so a reader knows what to expect without reading the config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from headmri.atomic import write_text

SPACE = "MNI152NLin6Asym"


def results_readme(
    *,
    tasks: Sequence[str],
    models: Sequence[str],
    folds: Sequence[int],
    method: str,
    top_k: int,
    patients: str,
    statistic: str,
    save_nifti: bool,
) -> str:
    """The Markdown text of ``results/README.md`` for one run's settings."""
    main, baselines = models[0], list(models[1:])
    who = "the held-out test patients of each fold" if patients == "test" else "every patient of the task's disease class(es) in each fold"
    lines = [
        "# results/",
        "",
        "Written by the headmri workflow. Every path below is relative to this folder; `X` is a subject label",
        f"(`sub-X`), `T` a task ({', '.join(f'`{t}`' for t in tasks)}), `M` a model "
        f"({', '.join(f'`{m}`' for m in models)}), `K` a fold (1-{max(folds)}).",
        f"Space: `{SPACE}` is the MNI152 1 mm template grid (182 x 218 x 182, RAS). The HTML report",
        "(`snakemake --report report.html`) collects the tables and figures with captions.",
        "",
        "## Input and preprocessing (per subject)",
        "",
        "| path | what |",
        "|---|---|",
        "| `demo/bids/` | the synthetic demo cohort (only when no `bids_dir` is given), with `ground_truth.tsv` of the planted regions |",
        "| `bids/` | T1w images converted from DICOM with dcm2niix (only when `dicom_dir` is used) |",
        "| `preproc/sub-X/anat/sub-X_desc-brain_T1w.nii.gz`, `..._desc-brain_mask.nii.gz` | brain and brain mask in native space |",
        f"| `preproc/sub-X/anat/sub-X_from-T1w_to-{SPACE}_mode-image_xfm.mat` | the registration backend's own transform file |",
        f"| `preproc/sub-X/anat/sub-X_from-T1w_to-{SPACE}_affine.txt` | the same transform as a 4x4 RAS-mm matrix (`numpy.loadtxt`) |",
        f"| `preproc/sub-X/anat/sub-X_space-{SPACE}_desc-brain_T1w.nii.gz`, `..._desc-brain_mask.nii.gz` | brain and mask on the MNI grid |",
        f"| `preproc/sub-X/anat/sub-X_space-{SPACE}_desc-wmparc_dseg.nii.gz` | parcellation on the MNI grid, FreeSurfer LUT codes, the 14 excluded structures removed |",
        f"| `atlas/atlas-DKwm_space-{SPACE}_dseg.nii.gz`, `.tsv` | the embedded atlas and its region table (embedded parcellation backend) |",
        "| `qc/preprocessing.tsv`, `qc/sub-X_qc.png` | QC metrics per subject (outliers flagged) and overlay images |",
        "| `slices/sub-X_slices.npy`, `slices/sub-X_slices.json` | the subject's sagittal slices (n, S, S) and their geometry (slice pixel <-> MNI voxel) |",
        "",
        "## Classification (per task, model and fold)",
        "",
        "| path | what |",
        "|---|---|",
        "| `splits/task-T.tsv` | subject-level splits: one row per subject and fold, `split` = train / val / test |",
        "| `train/task-T/model-M/fold-K/model.pt` | the trained model (weights and metadata: encoder, classes, input size, normalisation) |",
        "| `train/task-T/model-M/fold-K/history.tsv` | per-epoch training loss, validation loss, AUC and probability spread; the selected epoch |",
        "| `train/task-T/model-M/fold-K/predictions_slices.tsv`, `predictions_subjects.tsv` | class probabilities per slice, and per subject (slices aggregated) |",
        "| `train/task-T/model-M/fold-K/metrics.tsv` | subject-level metrics of the fold's validation and test subjects, and whether its model learned (`learned`, `learned_reason`, `selected_epoch`, `selected_train_loss`, `chance_loss`, `prob_spread`) |",
        "| `tables/metrics.tsv`, `tables/metrics_summary.md`, `figures/metrics.png` | metrics of every task, model and fold; mean +- sd over the folds that learned (Table 3 layout), with the folds that did not listed |",
        "",
        "## Explanations and regional rankings",
        "",
        f"Maps: {method} ({'Grad-CAM for the disease class on the last attention block' if method == 'gradcam' else 'attention rollout'}; "
        "the 3D baseline uses Grad-CAM on its last convolutional stage), raw values (no per-slice",
        f"min-max scaling), explained for {who}. Each region's value per patient is the {statistic} of the",
        "map inside it; values are averaged over patients within a fold, then over folds. See docs/explanations.md.",
        "",
        "| path | what |",
        "|---|---|",
        "| `explain/task-T/model-M/fold-K/regions.tsv` | one row per explained patient and region: `participant_id, group, split, target, label` (LUT code), `region` (LUT name), `value` |",
        f"| `explain/task-T/model-M/fold-K/space-{SPACE}_desc-mean_map.nii.gz` | the fold's mean map over its explained patients, on the MNI grid |",
        "| `explain/task-T/model-M/fold-K/explain.json` | what the fold job did: method, layer, target classes, patients, device |",
    ]
    if save_nifti:
        lines.append(f"| `explain/task-T/model-M/fold-K/maps/sub-X_space-{SPACE}_desc-{method}_map.nii.gz` | each explained patient's 3D map |")
    lines += [
        f"| `tables/task-T_regions.tsv` | the ranking for the main model (`{main}`): `target, rank, region, label, hemisphere, tissue, structure, mean, sd` (over folds), `folds_in_top_k` (folds in which the region is in that fold's top {top_k}), `n_folds` (folds ranked over: those that learned, by default), `n_learned` (0: no fold learned, no evidence), `n_patients` |",
    ]
    if baselines:
        lines.append(f"| `tables/task-T_model-M_regions.tsv` | the same ranking for the baseline model(s) ({', '.join(f'`{m}`' for m in baselines)}) |")
    lines += [
        "| `figures/task-T/regions_ranked.png` | the top regions' mean activation, sd over folds as error bars |",
        f"| `figures/task-T/space-{SPACE}_desc-mean_map.nii.gz`, `mean_map.png` | the mean map over patients and folds, and its picture over the MNI template |",
        f"| `figures/task-T/top_regions.png` | the top {top_k} regions drawn on the atlas |",
        "| `figures/task-T/roc.png`, `confusion.png` | ROC curves of the test subjects (one per fold) and the confusion matrix summed over folds |",
        "| `figures/task-T/montage_model-M_fold-K.png` | slices of a few explained patients with their maps (one colour scale) |",
        "",
        "## Bookkeeping",
        "",
        "| path | what |",
        "|---|---|",
        "| `logs/` | one log per job |",
        "| `benchmarks/` | run time and memory of the training and explanation jobs |",
        "| `provenance/` | the resolved configuration, package and tool versions, the code's git state |",
        "",
    ]
    return "\n".join(lines)


def write_results_readme(path: str | Path, **settings) -> None:
    write_text(results_readme(**settings), path)
