"""``results/README.md``: what every file under ``results/`` is, written by the workflow for this run.

The file names come from the path table the rules use (``headmri.paths``, ``P`` in ``common.smk``); the text
names this run's tasks, models and folds so a reader knows what to expect without reading the config.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from headmri.atomic import write_text
from headmri.config import ExplainConfig
from headmri.paths import shown
from headmri.templates import SPACE


@dataclass(frozen=True)
class RunLayout:
    """What a run is made of, as the README names it: image sources, tasks, models (the first is the main
    encoder, the others baselines), folds, and whether the fMRI branch is on."""

    sources: Sequence[str]
    tasks: Sequence[str]
    models: Sequence[str]
    folds: Sequence[int]
    fmri: bool = False


def results_readme(run: RunLayout, explain: ExplainConfig) -> str:
    """The Markdown text of ``results/README.md`` for one run's layout and explanation settings."""
    return "\n".join([*_input_lines(run), *_classification_lines(), *_explanation_lines(run, explain),
                      *(_fmri_lines() if run.fmri else []), *_bookkeeping_lines()])


def _input_lines(run: RunLayout) -> list[str]:
    return [
        "# results/",
        "",
        "Written by the headmri workflow. Every path below is relative to this folder; `X` is a subject label",
        f"(`sub-X`), `S` an image source ({', '.join(f'`{s}`' for s in run.sources)}; config `sources`), `T` a task ({', '.join(f'`{t}`' for t in run.tasks)}), `M` a model "
        f"({', '.join(f'`{m}`' for m in run.models)}), `K` a fold (1-{max(run.folds)}).",
        f"Space: `{SPACE}` is the MNI152 1 mm template grid (182 x 218 x 182, RAS). The HTML report",
        "(`snakemake --report report.html`) collects the tables and figures with captions.",
        "",
        "## Input and preprocessing (per subject)",
        "",
        "| path | what |",
        "|---|---|",
        "| `demo/bids/` | the synthetic demo cohort (only when no `bids_dir` is given), with `ground_truth.tsv` of the planted regions |",
        "| `bids/` | T1w images converted from DICOM with dcm2niix (only when `dicom_dir` is used) |",
        f"| `{shown('brain_native')}`, `{shown('mask_native')}` | brain and brain mask in native space |",
        f"| `{shown('brain_biascorr')}` | the native brain N4-corrected (`preprocessing.bias_correction: n4`), which the registration moves |",
        f"| `{shown('xfm')}` | the registration backend's own transform file |",
        f"| `{shown('affine')}` | the same transform as a 4x4 RAS-mm matrix (`numpy.loadtxt`) |",
        f"| `{shown('brain_mni')}`, `{shown('mask_mni')}` | brain and mask on the MNI grid |",
        f"| `{shown('dseg_mni')}` | parcellation on the MNI grid, FreeSurfer LUT codes, the 14 excluded structures removed |",
        f"| `{shown('atlas')}`, `{shown('atlas_tsv')}` | the embedded atlas and its region table (embedded parcellation backend) |",
        f"| `{shown('inputs')}` | every T1w file's input check: subject, session, run, file, image, status, problem, run choice |",
        f"| `{shown('input_row')}`, `{shown('input_ok')}` | one image's input-check row, and its acceptance (which its brain extraction waits for) |",
        f"| `{shown('qc_table')}`, `{shown('qc_png')}` | QC metrics per image (outliers flagged) and overlay images |",
        f"| `{shown('demographics')}` | the participants' characteristics per group (Table 1 layout: median (IQR) and Kruskal-Wallis H for numbers, n (%) and chi-square for categories) |",
        f"| `{shown('slices')}`, `{shown('slices_json')}` | the subject's slices of source S along its axis at N px (n, N, N; one set per input size of the source's encoders) and their geometry (slice pixel <-> MNI voxel) |",
        "",
    ]


def _classification_lines() -> list[str]:
    return [
        "## Classification (per task, model and fold)",
        "",
        "| path | what |",
        "|---|---|",
        f"| `{shown('split')}` | subject-level splits: one row per subject and fold, `split` = train / val / test |",
        f"| `{shown('train_dir', '/model.pt')}` | the trained model (weights and metadata: encoder, classes, input size, normalisation) |",
        f"| `{shown('train_dir', '/history.tsv')}` | per-epoch training loss, validation loss, AUC and probability spread; the selected epoch |",
        f"| `{shown('train_dir', '/predictions_slices.tsv')}`, `predictions_subjects.tsv` | class probabilities per slice, and per subject (slices aggregated) |",
        f"| `{shown('train_dir', '/metrics.tsv')}` | subject-level metrics of the fold's validation and test subjects, and whether its model learned (`learned`, `learned_reason`, `selected_epoch`, `selected_train_loss`, `chance_loss`, `prob_spread`) |",
        f"| `{shown('metrics_table')}`, `{shown('metrics_summary')}`, `{shown('metrics_figure')}` | metrics of every source, task, model and fold (`source` column first; `per_class`: each class one-vs-rest; and a pooled test row per model, fold 0: every fold's test subjects scored together); mean +- sd over the folds that learned (Table 3 layout), with the folds that did not listed |",
        "",
    ]


def _explanation_lines(run: RunLayout, explain: ExplainConfig) -> list[str]:
    main, baselines = run.models[0], list(run.models[1:])
    method, top_k, statistic, ranking = explain.method, explain.top_k, explain.region_statistic, explain.ranking
    bootstrap, sanity_check = explain.bootstrap, explain.sanity_check
    described, who, scale, by = _explanation_words(explain)
    lines = [
        "## Explanations and regional rankings",
        "",
        f"Maps: {method} ({described}; the 3D baseline uses Grad-CAM on its last convolutional stage), raw values",
        f"(no per-slice min-max scaling), explained for {who}. Each region's value per subject is the {statistic}",
        f"of the map inside it (occlusion: the region's own value); each subject's values are {scale}; regions",
        f"are ranked by {by}"
        + (f", with 95 % bootstrap intervals over subjects ({bootstrap} replicates)." if bootstrap else "."),
        "See docs/explanations.md.",
        "",
        "| path | what |",
        "|---|---|",
        f"| `{shown('explain_regions')}` | one row per explained subject and region: `participant_id, group, split, target, label` (code of the source's label table), `region` (its name), `value`; controls have their own `group` and the disease class as `target` |",
        f"| `{shown('explain_mean_map')}` | the fold's mean map over its explained patients, on the MNI grid |",
        f"| `{shown('explain_summary')}` | what the fold job did: method, layer, target classes, patients, controls, device"
        + (", and the randomisation test (`sanity`)" if sanity_check else "") + " |",
    ]
    if explain.save_nifti:
        lines.append(f"| `{shown('explain_maps', f'/sub-X_space-{SPACE}_desc-{method}_map.nii.gz')}` | each explained patient's 3D map |")
    lines += [
        f"| `{shown('regions')}` | the ranking for the source's first encoder (`{main}` for the first source): `target, rank, region, label, hemisphere, tissue, structure`, "
        f"`score` (the ranking statistic, `{ranking}`), `ci_low, ci_high` (its 95 % bootstrap interval) and `rank_ci` (the rank's), "
        "`mean, sd` (of the patients' normalised scores, over folds), `contrast` (Hedges' g patients vs controls, mean over folds; empty without controls), "
        f"`folds_in_top_k` (folds in which the region is in that fold's top {top_k}), `n_folds` (folds ranked over: those that learned, by default), "
        "`n_learned` (0: no fold learned, no evidence), `n_patients, n_controls`, `statistic, normalisation` |",
    ]
    if sanity_check:
        lines.append(f"| `{shown('sanity')}` | the model-parameter randomisation test per source, task, model, method and fold: `spearman` "
                     f"(median rank correlation of trained vs re-initialised region scores), `passed` (below {explain.sanity_threshold:g}: "
                     "the maps depend on the learnt weights) |")
    if baselines:
        lines.append(f"| `{shown('regions_model')}` | the same ranking for the baseline model(s) ({', '.join(f'`{m}`' for m in baselines)}) |")
    lines += [
        f"| `{shown('task_figures', '/regions_ranked.png')}` | the top regions' ranking score with its bootstrap interval (or the sd over folds), the rank interval beside each name, the randomisation test in the title |",
        f"| `{shown('task_figures', f'/space-{SPACE}_desc-mean_map.nii.gz')}`, `mean_map.png` | the mean map over patients and folds, and its picture over the MNI template |",
        f"| `{shown('task_figures', '/top_regions.png')}` | the top {top_k} regions drawn on the atlas |",
        f"| `{shown('task_figures', '/roc.png')}`, `confusion.png` | ROC curves of the test subjects (one per fold) and the confusion matrix summed over folds |",
        f"| `{shown('montage')}` | slices of a few explained patients with their maps (one colour scale) |",
        "",
    ]
    return lines


def _explanation_words(explain: ExplainConfig) -> tuple[str, str, str, str]:
    """The method described, who is explained, how scores are scaled and how regions are ranked, in words."""
    who = "the held-out test patients of each fold" if explain.patients == "test" else "every patient of the task's disease class(es) in each fold"
    if explain.explains_controls:
        who += (", and the fold's controls (" + ("test" if explain.patients == "test" else "all") +
                " subjects of the reference class) explained for the disease class")
    described = {
        "gradcam": "Grad-CAM for the disease class on the last attention block",
        "rollout": "attention rollout, class-agnostic",
        "chefer": "gradient-weighted attention rollout for the disease class",
        "occlusion": "region occlusion: the drop in the disease-class probability when a region is replaced by the training controls' mean",
    }.get(explain.method, explain.method)
    scale = {"zscore": "z-scored over its regions", "rank": "turned into percentile ranks over its regions",
             "none": "left raw"}.get(explain.normalisation, explain.normalisation)
    by = ("the mean over patients within each fold, then over folds" if explain.ranking == "mean" else
          "the contrast: Hedges' g of the patients' scores against the controls' within each fold, then the mean over folds")
    return described, who, scale, by


def _bookkeeping_lines() -> list[str]:
    return [
        "## Bookkeeping",
        "",
        "| path | what |",
        "|---|---|",
        "| `logs/` | one log per job |",
        "| `benchmarks/` | run time and memory of every per-image, training and explanation job |",
        f"| `{shown('provenance')}/` | the resolved configuration, package and tool versions, the code's git state |",
        "",
    ]


def _fmri_lines() -> list[str]:
    indicator_maps = ", ".join(f"`{shown(f'fmri_{name}')}`" for name in ("alff", "malff", "falff", "reho", "rfcs"))
    return [
        "## fMRI branch (config `fmri`, docs/fmri.md)",
        "",
        "| path | what |",
        "|---|---|",
        "| `demo/bold/` | the synthetic BOLD cohort (only when no `fmri.derivatives_dir` is given), with `ground_truth.tsv` of the planted regions |",
        f"| `{shown('bold_input_row')}`, `{shown('bold_input_ok')}` | one subject's BOLD header check (its row of `{shown('inputs')}`, modality `bold`), and its acceptance (which its indicator job waits for) |",
        f"| {indicator_maps} | ALFF, mALFF (ALFF / its mean in the mask), fALFF, ReHo (Kendall's W / its mean in the mask) and RFCS painted on the AAL regions, on the MNI grid of `fmri.voxel_mm`; each indicator in `fmri.sources` is the image source of that name |",
        f"| `{shown('fmri_mask')}` | the brain mask the maps were computed in (the indicator sources' mask) |",
        f"| `{shown('fmri_rfcs_tsv')}` | the RFCS vector: `label, region, rfcs` for the 116 AAL regions |",
        f"| `{shown('fmri_atlas')}`, `{shown('fmri_atlas_tsv')}` | AAL-116 on the same grid (every indicator source's atlas) and its label table |",
        f"| `{shown('baseline_metrics')}` | SVM and random forest on the RFCS vectors, on the task's split (`validation` = split) and leave-one-subject-out (model `<M>loso`, fold 0: every fold's one test subject pooled); these rows are in `{shown('metrics_table')}` too |",
        f"| `{shown('baseline_importance')}` | permutation importance of each AAL region's RFCS for baseline M on the test subjects of each fold, mean over folds, ranked |",
        "",
    ]


def write_results_readme(path: str | Path, run: RunLayout, explain: ExplainConfig) -> None:
    write_text(results_readme(run, explain), path)
