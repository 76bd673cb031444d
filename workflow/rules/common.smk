# Shared planning: the typed configuration, the subjects, and where every file lives.
# Path templates below are the single source of truth for output names (BIDS-derivatives style).

import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)  # the headmri package lives beside the Snakefile

from headmri import bids as _bids
from headmri import config as _config
from headmri.demo import demo_participants
from headmri.encoder_names import is_light_encoder
from headmri.t1w import check_header

CFG = _config.from_mapping(config)
RESULTS = CFG.results_dir
SPACE = "MNI152NLin6Asym"
LOGS = f"{RESULTS}/logs"
ENV_MAIN = "../../envs/headmri.yaml"
ENV_FSL = "../../envs/fsl.yaml"

# --- Subjects ----------------------------------------------------------------------------------------
# The demo cohort's subjects follow from the config alone; a real dataset is read and checked here,
# before any job runs, so bad input stops the run up front.
if CFG.is_demo:
    BIDS_DIR = f"{RESULTS}/demo/bids"
    _demo = demo_participants(CFG.demo.group_sizes)
    SUBJECT_GROUP = {label: group for label, group in _demo if not CFG.subjects or label in CFG.subjects}
    T1W_INPUT = {label: f"{BIDS_DIR}/sub-{label}/anat/sub-{label}_T1w.nii.gz" for label in SUBJECT_GROUP}
    DICOM_INPUT = {}
    PARTICIPANTS_TSV = f"{BIDS_DIR}/participants.tsv"
else:
    BIDS_DIR = CFG.bids_dir
    _participants = _bids.load_participants(
        CFG.bids_dir, CFG.participants_tsv, CFG.groups, CFG.dicom_dir, CFG.subjects
    )
    SUBJECT_GROUP = {p.label: p.group for p in _participants}
    T1W_INPUT = {
        p.label: (str(p.t1w) if p.t1w else f"{RESULTS}/bids/sub-{p.label}/anat/sub-{p.label}_T1w.nii.gz")
        for p in _participants
    }
    DICOM_INPUT = {p.label: str(p.dicom_dir) for p in _participants if p.dicom_dir}
    PARTICIPANTS_TSV = CFG.participants_tsv or f"{CFG.bids_dir}/participants.tsv"
    for _p in _participants:
        if _p.t1w:  # header-only checks for every subject: cheap, and before any heavy work
            check_header(_p.t1w, subject=_p.participant_id)

SUBJECTS = sorted(SUBJECT_GROUP)
TASKS = [t.name for t in CFG.tasks]
FOLDS = list(range(1, CFG.splits.folds + 1))


wildcard_constraints:
    subject="[A-Za-z0-9]+",
    task="[a-z0-9]+",
    fold="[0-9]+",


# --- Path templates ----------------------------------------------------------------------------------
PREPROC = f"{RESULTS}/preproc/sub-{{subject}}/anat/sub-{{subject}}"
P = {
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
