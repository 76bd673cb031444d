# Shared planning: the typed configuration, the subjects, and where every file lives.
# Path templates below are the single source of truth for output names (BIDS-derivatives style).

import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)  # the headmri package lives beside the Snakefile

from snakemake.logging import logger

from headmri import backends as _backends
from headmri import bids as _bids
from headmri import config as _config
from headmri import inputs as _inputs
from headmri.demo import demo_participants
from headmri.encoder_names import is_light_encoder
from headmri import paths as _paths
from headmri import templates as _templates
from headmri import scheduler_fix as _scheduler_fix

_scheduler_fix.install()  # Snakemake's scheduler keeps one re-evaluation timer pending, not one per finished job

CFG = _config.from_mapping(config)
RESULTS = CFG.results_dir
SPACE = _templates.SPACE  # the standard space's name, one place: headmri.templates
LOGS = f"{RESULTS}/logs"
BENCHMARKS = f"{RESULTS}/benchmarks"
ENV_MAIN = f"../../envs/{_backends.MAIN_ENV}"
ENV_FSL = f"../../envs/{_backends.FSL_ENV}"
# the preprocessing backend of each step (config preprocessing.<step>): its script, env and library
# function, from the one dispatch table (headmri.backends)
BACKEND = {step: _backends.backend(step, getattr(CFG.preprocessing, step)) for step in _backends.BACKENDS}


def backend_env(step):
    return f"../../envs/{BACKEND[step].env}"


def backend_script(step):
    return f"../../scripts/{BACKEND[step].script}"

CONVERTED_T1W = f"{RESULTS}/bids/sub-{{subject}}/anat/sub-{{subject}}_T1w"  # + .nii.gz / .json (convert.smk)

# --- Images ------------------------------------------------------------------------------------------
# The unit of every per-image rule is an image, keyed by the `subject` wildcard: the participant label
# ("01"), with the session when the subject has sessions ("01_ses-02"), and with all its entities when
# config `runs` is all and a session has several ("01_ses-02_run-2"); outputs are named sub-<key>
# (headmri.inputs, docs/preprocessing.md "Sessions and runs"). Here the dataset's table and file names
# are checked (all problems together; with config `subjects`, other rows' problems only warn) and every
# image's header is read; header and voxel problems are then each image's check_input job's to report.
BIDS_DIR, PARTICIPANTS_TSV = None, None
IMAGES, PARTICIPANT_GROUP, DICOM_INPUT = {}, {}, {}
if CFG.structural and CFG.is_demo:
    BIDS_DIR = f"{RESULTS}/demo/bids"
    _demo = demo_participants(CFG.demo.group_sizes)
    IMAGES = {
        label: _inputs.Image(key=label, label=label, session=None,
                             file=Path(f"{BIDS_DIR}/sub-{label}/anat/sub-{label}_T1w.nii.gz"))
        for label, _group in _demo if not CFG.subjects or label in CFG.subjects
    }
    PARTICIPANT_GROUP = dict(_demo)
    PARTICIPANTS_TSV = f"{BIDS_DIR}/participants.tsv"
elif CFG.structural:
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

# The fMRI branch (config `fmri`, docs/fmri.md): each participant's BOLD runs, from the derivatives folder
# (with or without structural sources) or the synthetic BOLD cohort (without). On its own, its images are
# keyed like the T1w branch's: one per session ("01_ses-02"), one per run with fmri.runs all; beside
# structural sources every image must be a participant (no sessions: one run per participant).
FMRI = CFG.fmri
FMRI_DEMO_DIR = f"{RESULTS}/demo/bold"
BOLD_RUNS = {}  # image key -> headmri.fmri.inputs.PlannedRun
if FMRI.enabled and FMRI.is_demo:
    from headmri.demo.bold import planned_runs as _demo_bold_runs

    _bold_demo = demo_participants(FMRI.demo.group_sizes)
    PARTICIPANT_GROUP = dict(_bold_demo)
    BOLD_RUNS = _demo_bold_runs(FMRI_DEMO_DIR, [l for l, _ in _bold_demo if not CFG.subjects or l in CFG.subjects])
    PARTICIPANTS_TSV = f"{FMRI_DEMO_DIR}/participants.tsv"
elif FMRI.enabled:
    from headmri.fmri import inputs as _fmri_inputs

    if not CFG.structural:
        PARTICIPANTS_TSV = CFG.participants_tsv or f"{CFG.bids_dir}/participants.tsv"
        PARTICIPANT_GROUP = _fmri_inputs.participant_groups(PARTICIPANTS_TSV, CFG.groups, CFG.subjects)
    elif any(key != image.label for key, image in IMAGES.items()):
        raise _config.ConfigError("the fMRI branch beside structural sources needs one T1w image per participant "
                               "(no sessions or runs: all); run the fMRI branch on its own (sources: [])")
    _patterns = _fmri_inputs.BoldPatterns(Path(FMRI.derivatives_dir), FMRI.bold, FMRI.mask, FMRI.confounds_file,
                                          FMRI.space)
    BOLD_RUNS = _fmri_inputs.plan_runs(_patterns, sorted({image.label for image in IMAGES.values()} if CFG.structural
                                                         else PARTICIPANT_GROUP), FMRI.runs, sessions=not CFG.structural)
    if CFG.structural and any(key != run.label for key, run in BOLD_RUNS.items()):
        raise _config.ConfigError("the fMRI branch beside structural sources takes one BOLD run per participant "
                                  "(fmri.runs: first or last, not all); run the fMRI branch on its own (sources: []) "
                                  "for several sessions or runs")

T1W_INPUT = {key: str(image.file) for key, image in IMAGES.items()}
PARTICIPANT_OF = ({key: image.label for key, image in IMAGES.items()} if CFG.structural
                  else {key: run.label for key, run in BOLD_RUNS.items()})  # image key -> participant label
SUBJECT_GROUP = {key: PARTICIPANT_GROUP[label] for key, label in PARTICIPANT_OF.items()}  # image key -> group
SUBJECTS = sorted(PARTICIPANT_OF)  # image keys
TASKS = []  # the tasks this run trains: those with images of every class (a `subjects` subset may leave some out)
for _task in CFG.tasks:
    if _empty := _task.empty_classes(SUBJECT_GROUP.values()):
        logger.warning(f"Task {_task.name!r} left out of this run: no image of class {', '.join(_empty)} among the "
                       f"run's {len(SUBJECTS)} images" + (" (config `subjects`)" if CFG.subjects else ""))
    else:
        TASKS.append(_task.name)
FOLDS = list(range(1, CFG.splits.folds + 1))


def task_folds(task):
    """The folds of a task: 1..splits.folds, or with splits.scheme loso one per participant of the task's
    classes (headmri.splits.leave_one_subject_out numbers them in participant order)."""
    if not CFG.splits.leave_one_subject_out:
        return FOLDS
    classes = CFG.task(task).classes
    return list(range(1, len({PARTICIPANT_OF[k] for k in SUBJECTS if SUBJECT_GROUP[k] in classes}) + 1))


TASK_FOLDS = [(task, fold) for task in TASKS for fold in task_folds(task)]  # every (task, fold) of the run


wildcard_constraints:
    subject=_inputs.IMAGE_KEY_PATTERN,
    source="[A-Za-z0-9]+",
    size="[0-9]+",
    task="[a-z0-9]+",
    fold="[0-9]+",


# --- Path templates ----------------------------------------------------------------------------------
# The one path table (headmri.paths): the rules' file names and results/README.md come from it.
P = _paths.path_table(RESULTS, fmri_space=FMRI.space)


def subject_log(name):
    return f"{LOGS}/{name}/sub-{{subject}}.log"


def subject_benchmark(name):
    return f"{BENCHMARKS}/{name}/sub-{{subject}}.tsv"


def t1w_input(wildcards):
    return T1W_INPUT[wildcards.subject]


def expand_subjects(template):
    return expand(template, subject=SUBJECTS)


def task_class(task, subject):
    """The class of an image's subject in a task (its group, or the class that pools it), None if left out."""
    return CFG.task(task).class_of(SUBJECT_GROUP[subject])


model_key = _paths.model_key  # the `model-<key>` path entity of an encoder name


# --- Image sources -----------------------------------------------------------------------------------
# Each source (config `sources`) names its per-subject image and mask, its atlas and label table, how it
# is sliced and which encoders it trains; everything after the slices is keyed by `{source}`.
SOURCES = [s.name for s in CFG.sources]
SOURCE = {name: CFG.source(name) for name in SOURCES}


def _slice_sizes():
    """(source, model key) -> the slice size that model is fed: the source's size when the config sets one
    (its own or `slices.size`), else the encoder's input size; each source is sliced once per size."""
    from headmri.model_inputs import slice_sizes  # imports no torch for the named encoders

    return {(name, model_key(encoder)): size for name in SOURCES
            for encoder, size in slice_sizes(SOURCE[name].encoders, SOURCE[name].size).items()}


SLICE_SIZE = _slice_sizes()


def sizes_of(source):
    """The slice sizes a source is cut at (one per distinct size its slice models take)."""
    return sorted({size for (name, _), size in SLICE_SIZE.items() if name == source})


def models_of(source):
    """The `model-<key>` values trained on a source: its encoders, then the 3D baseline if configured."""
    keys = [model_key(encoder) for encoder in SOURCE[source].encoders]
    return keys + (["resnet3d"] if CFG.model.baseline_resnet3d else [])


ENCODER_OF_MODEL = {model_key(e): e for s in SOURCES for e in SOURCE[s].encoders} | {"resnet3d": "resnet3d"}
SOURCE_MODELS = [(s, m) for s in SOURCES for m in models_of(s)]
MODELS = list(dict.fromkeys(m for _, m in SOURCE_MODELS))


def expand_source_models(template, **wildcards):
    """`template` for every source with each of its models (and every combination of `wildcards`)."""
    return [path for s, m in SOURCE_MODELS for path in expand(template, source=s, model=m, **wildcards)]


def expand_source_model_folds(template, **wildcards):
    """`template` for every source with each of its models and every task with each of its folds (in that order)."""
    return [path for s, m in SOURCE_MODELS for task, fold in TASK_FOLDS
            for path in expand(template, source=s, model=m, task=task, fold=fold, **wildcards)]


def _workflow_file(path):
    """A config path as given (relative to the working directory), or beside the workflow if only there."""
    return str(path if Path(path).is_absolute() or Path(path).exists() else Path(workflow.basedir) / path)


def source_file(key, subject):
    """One subject's file of a source: `key` is a path-table key (`brain_mni`) or a path, with or without
    `{subject}` (without: one file for every subject, like a standard-space atlas)."""
    if key in P:  # a file the workflow writes, where it writes it
        return P[key].format(subject=subject) if "{subject}" in P[key] else P[key]
    return key.format(subject=subject) if "{subject}" in key else _workflow_file(key)


def source_image(wildcards):
    return source_file(SOURCE[wildcards.source].image, wildcards.subject)


def source_mask(wildcards):
    return source_file(SOURCE[wildcards.source].mask, wildcards.subject)


def source_atlas(source, subjects):
    """The label image of each of `subjects` for `source` (the same file for all with a one-file atlas)."""
    return [source_file(SOURCE[source].atlas, s) for s in subjects]


def source_label_table(source):
    """The label table file of a source (the built-in FreeSurfer one, or the config's TSV)."""
    from headmri.labels import FREESURFER, LUT_PATH

    labels = SOURCE[source].labels
    if labels in P:  # a table the workflow writes (the fMRI branch's AAL table)
        return P[labels]
    return str(LUT_PATH) if labels == FREESURFER else _workflow_file(labels)


def source_expected_regions(source):
    """The table of regions every parcellation of `source` must hold: the embedded atlas's for subject
    parcellations made by the embedded backend; none otherwise (they are inferred from the subjects)."""
    if SOURCE[source].atlas == "dseg_mni" and CFG.preprocessing.parcellation == "embedded":
        return {"atlas_tsv": P["atlas_tsv"]}
    return {}


wildcard_constraints:
    model="[a-z0-9]+",
