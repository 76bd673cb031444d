# Shared planning: the typed configuration, the subjects, and where every file lives.
# Path templates below are the single source of truth for output names (BIDS-derivatives style).

import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)  # the headmri package lives beside the Snakefile

from snakemake.logging import logger

from headmri import bids as _bids
from headmri import config as _config
from headmri import inputs as _inputs
from headmri.demo import demo_participants
from headmri.encoder_names import is_light_encoder

CFG = _config.from_mapping(config)
RESULTS = CFG.results_dir
SPACE = "MNI152NLin6Asym"
LOGS = f"{RESULTS}/logs"
BENCHMARKS = f"{RESULTS}/benchmarks"
ENV_MAIN = "../../envs/headmri.yaml"
ENV_FSL = "../../envs/fsl.yaml"
CONVERTED_T1W = f"{RESULTS}/bids/sub-{{subject}}/anat/sub-{{subject}}_T1w"  # + .nii.gz / .json (convert.smk)

# --- Images ------------------------------------------------------------------------------------------
# The unit of every per-image rule is an image, keyed by the `subject` wildcard: the participant label
# ("01"), with the session when the subject has sessions ("01_ses-02"), and with all its entities when
# config `runs` is all and a session has several ("01_ses-02_run-2"); outputs are named sub-<key>
# (headmri.inputs, docs/preprocessing.md "Sessions and runs"). Here the dataset's table and file names
# are checked (all problems together; with config `subjects`, other rows' problems only warn) and every
# image's header is read; header and voxel problems are then each image's check_input job's to report.
if CFG.is_demo:
    BIDS_DIR = f"{RESULTS}/demo/bids"
    _demo = demo_participants(CFG.demo.group_sizes)
    IMAGES = {
        label: _inputs.Image(key=label, label=label, session=None,
                             file=Path(f"{BIDS_DIR}/sub-{label}/anat/sub-{label}_T1w.nii.gz"))
        for label, _group in _demo if not CFG.subjects or label in CFG.subjects
    }
    PARTICIPANT_GROUP = dict(_demo)
    DICOM_INPUT = {}
    PARTICIPANTS_TSV = f"{BIDS_DIR}/participants.tsv"
else:
    BIDS_DIR = CFG.bids_dir
    _dataset = _bids.scan_dataset(CFG.bids_dir, CFG.participants_tsv, CFG.groups, CFG.dicom_dir, CFG.subjects)
    for _warning in _dataset.warnings:
        logger.warning(f"Left out (not among config `subjects`): {_warning}")
    PARTICIPANT_GROUP = {p.label: p.group for p in _dataset.participants}
    IMAGES = _inputs.plan_images(_dataset.participants, CFG.runs,
                                 lambda label: CONVERTED_T1W.format(subject=label) + ".nii.gz")
    DICOM_INPUT = {p.label: str(p.dicom_dir) for p in _dataset.participants if p.dicom_dir}
    PARTICIPANTS_TSV = CFG.participants_tsv or f"{CFG.bids_dir}/participants.tsv"
    for _problem in _inputs.header_problems(i for i in IMAGES.values() if i.label not in DICOM_INPUT):
        logger.warning(f"Input check will fail: {_problem}")
    _dataset.raise_errors()  # after the header warnings, so that one run shows every problem

T1W_INPUT = {key: str(image.file) for key, image in IMAGES.items()}
SUBJECT_GROUP = {key: PARTICIPANT_GROUP[image.label] for key, image in IMAGES.items()}  # image key -> group
PARTICIPANT_OF = {key: image.label for key, image in IMAGES.items()}  # image key -> participant label
SUBJECTS = sorted(IMAGES)  # image keys
TASKS = [t.name for t in CFG.tasks]
FOLDS = list(range(1, CFG.splits.folds + 1))


wildcard_constraints:
    subject=_inputs.IMAGE_KEY_PATTERN,
    task="[a-z0-9]+",
    fold="[0-9]+",


# --- Path templates ----------------------------------------------------------------------------------
PREPROC = f"{RESULTS}/preproc/sub-{{subject}}/anat/sub-{{subject}}"
P = {
    # input checks
    "input_row": f"{RESULTS}/qc/inputs/sub-{{subject}}_inputs.tsv",
    "input_ok": f"{RESULTS}/qc/inputs/sub-{{subject}}_accepted.tsv",
    "inputs": f"{RESULTS}/qc/inputs.tsv",
    # native space
    "brain_native": PREPROC + "_desc-brain_T1w.nii.gz",
    "mask_native": PREPROC + "_desc-brain_mask.nii.gz",
    # registration: the backend's own transform file, plus a backend-independent 4x4 RAS world affine
    "xfm": PREPROC + f"_from-T1w_to-{SPACE}_mode-image_xfm.mat",
    "affine": PREPROC + f"_from-T1w_to-{SPACE}_affine.txt",
    # MNI space (template grid 182x218x182, 1 mm)
    "brain_mni": PREPROC + f"_space-{SPACE}_desc-brain_T1w.nii.gz",
    "mask_mni": PREPROC + f"_space-{SPACE}_desc-brain_mask.nii.gz",
    "dseg_mni": PREPROC + f"_space-{SPACE}_desc-wmparc_dseg.nii.gz",
    # QC
    "qc_png": f"{RESULTS}/qc/sub-{{subject}}_qc.png",
    "qc_row": f"{RESULTS}/qc/subjects/sub-{{subject}}_qc.tsv",
    "qc_table": f"{RESULTS}/qc/preprocessing.tsv",
    # embedded atlas (built once)
    "atlas": f"{RESULTS}/atlas/atlas-DKwm_space-{SPACE}_dseg.nii.gz",
    "atlas_tsv": f"{RESULTS}/atlas/atlas-DKwm_space-{SPACE}_dseg.tsv",
    # slices
    "slices": f"{RESULTS}/slices/sub-{{subject}}_slices.npy",
    "slices_json": f"{RESULTS}/slices/sub-{{subject}}_slices.json",
    # splits, training, evaluation
    "split": f"{RESULTS}/splits/task-{{task}}.tsv",
    "train_dir": f"{RESULTS}/train/task-{{task}}/model-{{model}}/fold-{{fold}}",
    "tables": f"{RESULTS}/tables",
    # explanations
    "explain_dir": f"{RESULTS}/explain/task-{{task}}/model-{{model}}/fold-{{fold}}",
    "regions": f"{RESULTS}/tables/task-{{task}}_regions.tsv",
    "figures": f"{RESULTS}/figures",
    "provenance": f"{RESULTS}/provenance",
}


def subject_log(name):
    return f"{LOGS}/{name}/sub-{{subject}}.log"


def subject_benchmark(name):
    return f"{BENCHMARKS}/{name}/sub-{{subject}}.tsv"


def t1w_input(wildcards):
    return T1W_INPUT[wildcards.subject]


def expand_subjects(template):
    return expand(template, subject=SUBJECTS)


def model_key(encoder: str) -> str:
    """The `model-<key>` path entity for an encoder name: letters and digits only (BIDS entity value)."""
    return "".join(ch for ch in encoder.split(":")[-1].lower() if ch.isalnum())


MODELS = [model_key(CFG.model.encoder)] + (["resnet3d"] if CFG.model.baseline_resnet3d else [])
ENCODER_OF_MODEL = {model_key(CFG.model.encoder): CFG.model.encoder, "resnet3d": "resnet3d"}


wildcard_constraints:
    model="[a-z0-9]+",
