"""The workflow configuration as typed, frozen objects.

``snakemake.utils.validate`` checks config.yaml against ``workflow/schemas/config.schema.yaml`` and fills
defaults; ``from_mapping`` then turns the plain dict into these objects once, at the start. Library
functions take the section they need (or plain values), never the whole configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

from headmri.errors import ConfigError


@dataclass(frozen=True)
class Task:
    """A classification over ``classes`` (reference first). A class is a value of participants.tsv's
    ``group`` column, or pools several: ``pool`` maps a class to the groups it holds, e.g. ``migraine``
    for the groups ``MWoA`` and ``MWA`` (the fMRI paper's HC vs migraine task)."""

    name: str
    classes: tuple[str, ...]
    pool: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def groups_of(self, cls: str) -> tuple[str, ...]:
        """The participants.tsv groups of a class: the pooled ones, or the class itself."""
        return dict(self.pool).get(cls, (cls,))

    def class_of(self, group: str) -> str | None:
        """The class a subject of ``group`` belongs to in this task, None when the task leaves it out."""
        return next((c for c in self.classes if group in self.groups_of(c)), None)

    def empty_classes(self, groups: Iterable[str]) -> list[str]:
        """The task's classes that none of ``groups`` (one per subject of the run) falls in."""
        found = {self.class_of(g) for g in groups}
        return [c for c in self.classes if c not in found]

    @property
    def groups(self) -> tuple[str, ...]:
        """Every group the task's classes hold."""
        return tuple(g for c in self.classes for g in self.groups_of(c))

    @property
    def reference_class(self) -> str:
        return self.classes[0]

    @property
    def disease_classes(self) -> tuple[str, ...]:
        return self.classes[1:]

    @property
    def is_binary(self) -> bool:
        return len(self.classes) == 2


@dataclass(frozen=True)
class DemoConfig:
    seed: int = 20251121
    group_sizes: Mapping[str, int] = field(default_factory=lambda: {"HC": 8, "migraine": 8, "APTH": 8, "PPTH": 8})
    effects_tsv: str = "resources/demo_effects.tsv"
    restore_brain_mean: bool = False  # patients' brains keep the controls' mean (headmri.demo.effects.effect_gain)


@dataclass(frozen=True)
class FreeSurferConfig:
    container: str = "docker://freesurfer/freesurfer:7.4.1"
    license: str | None = None


@dataclass(frozen=True)
class PreprocessingConfig:
    brain_extraction: str = "embedded"
    registration: str = "embedded"
    parcellation: str = "embedded"
    ants_transform: str = "AffineFast"
    bet_frac: float = 0.5
    bias_correction: str = "none"  # none (the paper) | n4 (headmri.preprocess.bias)
    freesurfer: FreeSurferConfig = field(default_factory=FreeSurferConfig)
    qc_outlier_z: float = 3.0
    qc_min_spread: float = 0.01  # floor on a QC metric's robust spread, a fraction of its median (headmri.qc)


@dataclass(frozen=True)
class SliceConfig:
    axis: int = 0
    size: int | None = None  # None: the input size of the encoders (headmri.models.encoder_input_size)
    min_brain_fraction: float = 0.02
    percentiles: tuple[float, float] = (0.5, 99.5)
    dtype: str = "uint8"
    smooth_fwhm_mm: float = 0.0  # > 0: each stack smoothed inside the brain (headmri.slices.smooth)


DEFAULT_SOURCE = "T1w"


@dataclass(frozen=True)
class SourceConfig:
    """An image source: a named image set that the back half (slices, training, explanations, rankings)
    runs on, keyed by the ``source-<name>`` path entity (docs/architecture.md, "Image sources").

    ``image``/``mask``: the per-subject image and brain mask in the standard space, each a key of the
    workflow's path table (``brain_mni``, ``mask_mni``; results/README.md) or a path with ``{subject}``.
    ``atlas``: its label image on the same grid: a path-table key (``dseg_mni``: each subject's
    parcellation), a path with ``{subject}``, or one file for every subject. ``labels``: its label table
    (``headmri.labels``: ``freesurfer`` or a TSV path). ``axis``/``size``: how it is sliced (None: the
    ``slices`` section's; a size None there too is the input size of its encoders, which the workflow fills
    in from ``headmri.models.encoder_input_size``). ``encoders``: the slice encoders trained on it (empty: ``model.encoder``); the
    3D baseline (``model.baseline_resnet3d``) is trained on every source's image.
    """

    name: str = DEFAULT_SOURCE
    image: str = "brain_mni"
    mask: str = "mask_mni"
    atlas: str = "dseg_mni"
    labels: str = "freesurfer"
    axis: int | None = None
    size: int | None = None
    encoders: tuple[str, ...] = ()
    window: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.window is not None:
            low, high = (float(v) for v in self.window)
            if not high > low:
                raise ConfigError(f"source {self.name}: window must be [low, high] with high > low, got {list(self.window)}")
            object.__setattr__(self, "window", (low, high))

    def resolved(self, slices: "SliceConfig", model: "ModelConfig") -> "SourceConfig":
        """This source with every default filled in from the shared sections."""
        return replace(self, axis=slices.axis if self.axis is None else int(self.axis),
                       size=slices.size if self.size is None else int(self.size),
                       encoders=tuple(self.encoders) or (model.encoder,))


@dataclass(frozen=True)
class SplitConfig:
    folds: int = 5
    scheme: str = "balanced"
    val_per_class: int = 6
    test_per_class: int = 6
    proportional_val: float = 0.15
    proportional_test: float = 0.2
    seed: int = 13

    @property
    def leave_one_subject_out(self) -> bool:
        """One fold per participant (``scheme: loso``): the fold count is the task's; only the pooled test
        rows of the metrics table (headmri.evaluation.tables) score the model then."""
        return self.scheme == "loso"


@dataclass(frozen=True)
class ModelConfig:
    encoder: str = "biomedclip"
    checkpoint: str | None = None
    pretrained: bool = False
    freeze: str = "auto"  # auto | paper | none: which parameters train (headmri.models.freezing)
    baseline_resnet3d: bool = False


@dataclass(frozen=True)
class MilConfig:
    """``training.objective: mil`` (headmri.training.mil): per step ``bags_per_step`` patients with ``bag_slices``
    random slices each beside ``training.batch_size`` control slices."""

    bag_slices: int = 32
    bags_per_step: int = 2

    def __post_init__(self) -> None:
        if self.bag_slices < 1 or self.bags_per_step < 1:
            raise ConfigError("training.mil.bag_slices and bags_per_step must be 1 or more")


@dataclass(frozen=True)
class LearnedCheckConfig:
    """When a fold counts as learned (``headmri.evaluation.learned``, docs/training.md).

    ``max_loss_fraction_of_chance``: the selected epoch's training loss must be below this fraction of
    chance, ln(C) for C balanced classes. A fold at chance sits at 0.99-1.0 of it; 0.9 (0.62 for two
    classes) is far enough below that the epoch-to-epoch noise of a chance model does not pass, and
    lenient enough for a model that learnt slowly. ``min_probability_spread``: the validation and test
    subjects' disease-class probabilities must differ by at least this much (max - min). Untrained folds
    differ by 1e-5 to 1e-3, a learned one by tenths; 0.01 lies ten times above the untrained ones.
    """

    max_loss_fraction_of_chance: float = 0.9
    min_probability_spread: float = 0.01


SELECTION_RULES = ("loss", "auc", "last")
AUGMENTATIONS = ("none", "affine", "erase", "intensity")  # headmri.training.augment implements them
OBJECTIVES = ("slices", "mil")  # every slice with its subject's label (the paper) | headmri.training.mil
REFERENCES = ("none", "controls")  # what a slice model sees: the slice, or its difference from the fold's training controls (headmri.slices.reference)


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-5
    weight_decay: float = 0.05
    warmup_epochs: int = 1
    patience: int = 5
    grad_clip: float | None = 1.0
    seed: int = 0
    max_slices_per_subject: int | None = None
    augment: str = "none"  # training-batch augmentation: none | affine (headmri.training.augment)
    reference: str = "none"  # none: the slice (the paper) | controls: the slice minus the fold's training controls' mean
    objective: str = "slices"  # slices: every slice with its subject's label (the paper) | mil (headmri.training.mil)
    mil: MilConfig = field(default_factory=MilConfig)
    # checkpoint selection on the validation subjects (docs/training.md, "Selection"):
    # loss = lowest subject-level cross-entropy, AUC breaks ties; auc = highest AUC (the paper's way),
    # loss breaks ties, and an AUC from probabilities that differ by less than auc_min_spread counts as none
    selection: str = "loss"
    min_epochs: int = 1  # no epoch before this one can be selected
    auc_min_spread: float = 0.01
    learned_check: LearnedCheckConfig = field(default_factory=LearnedCheckConfig)

    def __post_init__(self) -> None:
        # a plain mapping (the validated config, or asdict() passed through Snakemake params) -> the dataclass
        if isinstance(self.learned_check, Mapping):
            object.__setattr__(self, "learned_check", _section(LearnedCheckConfig, self.learned_check))
        if isinstance(self.mil, Mapping):
            object.__setattr__(self, "mil", _section(MilConfig, self.mil))
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"training.objective must be one of {list(OBJECTIVES)}, got {self.objective!r}")
        if self.augment not in AUGMENTATIONS:
            raise ConfigError(f"training.augment must be one of {list(AUGMENTATIONS)}, got {self.augment!r}")
        if self.reference not in REFERENCES:
            raise ConfigError(f"training.reference must be one of {list(REFERENCES)}, got {self.reference!r}")
        if self.selection not in SELECTION_RULES:
            raise ConfigError(f"training.selection must be one of {list(SELECTION_RULES)}, got {self.selection!r}")
        if not 1 <= self.min_epochs <= self.epochs:
            raise ConfigError(f"training.min_epochs ({self.min_epochs}) must lie between 1 and epochs ({self.epochs})")


@dataclass(frozen=True)
class BaselineConfig:
    """The 3D ResNet-18 baseline (``model.baseline_resnet3d``), trained from scratch on whole volumes.

    Its own hyper-parameters: a from-scratch 3D CNN wants other settings than a fine-tuned ViT, and a
    batch holds whole volumes. A ``None`` hyper-parameter takes its value from ``training``.
    """

    voxel_size_mm: float = 2.0
    batch_size: int = 4
    lr: float | None = None
    weight_decay: float | None = None
    epochs: int | None = None
    warmup_epochs: int | None = None
    patience: int | None = None

    def training(self, shared: TrainingConfig) -> TrainingConfig:
        """``shared`` with this section's hyper-parameters in place of its own; no control reference (the
        baseline takes whole volumes, not slices)."""
        own = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "voxel_size_mm"}
        return replace(shared, reference="none", objective="slices", **{name: value for name, value in own.items() if value is not None})


@dataclass(frozen=True)
class EvaluationConfig:
    aggregation: str = "mean"


@dataclass(frozen=True)
class ComputeConfig:
    """Where training and explanation jobs run (``headmri.compute``, docs/cluster.md).

    ``device``: ``auto`` (cuda when torch sees a GPU on the machine that runs Snakemake), ``cpu`` or
    ``cuda``; only cuda jobs claim Snakemake's ``gpu`` resource. ``threads_per_job``: CPU threads of each
    job, so ``--cores N`` runs N // threads jobs side by side; None: 1 on the CPU, 8 on a GPU.
    ``compile``: ``torch.compile`` the training job's model; ``resume_every``: epochs between a training
    job's resume files. Neither changes what is trained (CPU results are the same either way): the training
    rule passes this object itself as a param, which Snakemake does not record (only builtin-typed params
    are), so changing them reruns nothing.
    """

    device: str = "auto"
    threads_per_job: int | None = None
    compile: bool = False
    resume_every: int = 1
    gpu_partition: str | None = None  # the SLURM partition of cuda jobs (None: the cluster's default)

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"compute.device must be auto, cpu or cuda, got {self.device!r}")
        if self.threads_per_job is not None:
            if not str(self.threads_per_job).isdigit() or int(self.threads_per_job) < 1:
                raise ConfigError(f"compute.threads_per_job must be a whole number of at least 1, got {self.threads_per_job!r}")
            object.__setattr__(self, "threads_per_job", int(self.threads_per_job))  # "2" from --config
        if str(self.compile).lower() not in ("true", "false"):
            raise ConfigError(f"compute.compile must be true or false, got {self.compile!r}")
        object.__setattr__(self, "compile", str(self.compile).lower() == "true")  # "true" from --config
        if not str(self.resume_every).isdigit() or int(self.resume_every) < 1:
            raise ConfigError(f"compute.resume_every must be a whole number of at least 1, got {self.resume_every!r}")
        object.__setattr__(self, "resume_every", int(self.resume_every))


OCCLUSION_SCORES = ("probability", "log_odds")  # explain.occlusion.score (headmri.explain.occlusion.SCORES)
OCCLUSION_MODES = ("delete", "insert")  # explain.occlusion.mode (headmri.explain.occlusion.MODES)


@dataclass(frozen=True)
class OcclusionConfig:
    """Region occlusion (``explain.method: occlusion``): its cost is one forward pass per region and slice
    that holds the region. ``batch_size``: occluded slices per forward pass (they mix regions);
    ``only_slices_with_region``: occlude only the slices that hold some of the region (the same values:
    the other slices are unchanged by the occlusion; false passes every slice, for checking). ``score``:
    what the drop is measured on, ``probability`` (the subject's mean slice probability of the target) or
    ``log_odds`` (the mean slice log-odds, which a saturated model does not flatten:
    ``headmri.explain.occlusion``). ``mode``: ``delete`` (the drop when the region is replaced by the
    controls' mean) or ``insert`` (the rise of the controls' mean when it gets the patient's region).
    ``slice_step``: occlude every k-th of the slices that hold a region and weight their drops up to all of
    them (k times fewer passes, an estimate of the value; 1, the default, is exact)."""

    batch_size: int = 128
    only_slices_with_region: bool = True
    score: str = "probability"
    mode: str = "delete"
    slice_step: int = 1

    def __post_init__(self) -> None:
        if self.score not in OCCLUSION_SCORES:
            raise ConfigError(f"explain.occlusion.score must be one of {list(OCCLUSION_SCORES)}, got {self.score!r}")
        if self.mode not in OCCLUSION_MODES:
            raise ConfigError(f"explain.occlusion.mode must be one of {list(OCCLUSION_MODES)}, got {self.mode!r}")
        if int(self.slice_step) < 1:
            raise ConfigError(f"explain.occlusion.slice_step must be 1 or more, got {self.slice_step!r}")

    def options(self) -> dict[str, Any]:
        """The keyword options of the method's class."""
        return {"batch_size": int(self.batch_size), "only_slices_with_region": bool(self.only_slices_with_region),
                "score": self.score, "mode": self.mode, "slice_step": int(self.slice_step)}


NORMALISATIONS = ("zscore", "rank", "none")  # explain.normalisation (headmri.explain.merge)
RANKINGS = ("mean", "contrast")  # explain.ranking


@dataclass(frozen=True)
class ExplainConfig:
    method: str = "gradcam"
    target_layer: str | None = None  # None: the layer the model names (ViT: trunk.blocks[-1].norm1)
    region_statistic: str = "max"
    patients: str = "test"
    top_k: int = 10
    save_nifti: bool = False
    occlusion: OcclusionConfig = field(default_factory=OcclusionConfig)
    # leave the folds whose model did not learn (training.learned_check) out of the rankings
    exclude_unlearned: bool = True
    # region statistics (headmri.explain.merge, docs/explanations.md "Region statistics"): each subject's
    # region scores standardised over its regions before any mean (zscore | rank | none = raw, the paper);
    # the ranking statistic (mean over patients then folds | contrast = Hedges' g patients vs controls);
    # whether the explain jobs also explain the controls for the disease class (None: when ranking is
    # contrast); bootstrap replicates over subjects for the intervals (0: none) and their seed
    normalisation: str = "zscore"
    ranking: str = "mean"
    controls: bool | None = None
    bootstrap: int = 1000
    seed: int = 0
    # the model-parameter randomisation test (headmri.explain.sanity): re-initialise the last 2 blocks and
    # the head sanity_repeats times, score sanity_patients patients (0: all) again, pass if the median
    # Spearman correlation with the trained model's region scores is below sanity_threshold
    sanity_check: bool = True
    sanity_patients: int = 2
    sanity_repeats: int = 3
    sanity_threshold: float = 0.5

    def __post_init__(self) -> None:
        from headmri.explain.methods import check_name  # the registry's names; imports no torch

        check_name(self.method)
        if isinstance(self.occlusion, Mapping):  # a plain mapping (the validated config) -> the dataclass
            object.__setattr__(self, "occlusion", _section(OcclusionConfig, self.occlusion))
        if self.normalisation not in NORMALISATIONS:
            raise ConfigError(f"explain.normalisation must be one of {list(NORMALISATIONS)}, got {self.normalisation!r}")
        if self.ranking not in RANKINGS:
            raise ConfigError(f"explain.ranking must be one of {list(RANKINGS)}, got {self.ranking!r}")
        if self.ranking == "contrast" and self.controls is False:
            raise ConfigError("explain.ranking: contrast compares patients with controls, so it needs explain.controls "
                              "true (or null)")

    @property
    def explains_controls(self) -> bool:
        """Whether the explain jobs also explain the controls (explicit, or implied by ranking: contrast)."""
        return bool(self.controls) if self.controls is not None else self.ranking == "contrast"

    def ranking_options(self, reference_class: str | None = None) -> dict[str, Any]:
        """Keyword arguments of headmri.explain.merge.RankingOptions."""
        return {"normalisation": self.normalisation, "ranking": self.ranking, "bootstrap": int(self.bootstrap),
                "seed": int(self.seed), "reference_class": reference_class}

    def sanity_options(self) -> dict[str, Any]:
        """Keyword arguments of the explain job's randomisation test (``sanity`` of explain_fold)."""
        return {"patients": int(self.sanity_patients), "repeats": int(self.sanity_repeats),
                "threshold": float(self.sanity_threshold), "seed": int(self.seed)}

    def method_options(self) -> dict[str, Any]:
        """Keyword options for the class of ``method`` (occlusion's section; none for the other methods)."""
        return self.occlusion.options() if self.method == "occlusion" else {}


FMRI_INDICATORS = ("alff", "malff", "falff", "reho", "rfcs")  # headmri.fmri.indicators.MAPS (a test keeps them equal)
REHO_NEIGHBOURHOODS = (7, 19, 27)
FMRI_RUN_CHOICES = ("first", "last", "all")  # headmri.fmri.inputs.RUN_CHOICES (a test keeps them equal)
FMRI_SOURCE_KEYS = {"mask": "fmri_mask", "atlas": "fmri_atlas", "labels": "fmri_atlas_tsv"}  # path-table keys
# The fixed slice window of each indicator (SourceConfig.window), also the schema's defaults (a test keeps
# them equal). mALFF and ReHo are divided by their brain mean (about 1 everywhere; the demo's controls
# reach 1.6 and 2.1 at the 99.5th percentile), fALFF and RFCS lie in [0, 1]; ALFF is in the scanner's units,
# so each subject's percentiles. A per-subject percentile window hides a focal effect in a global one: a
# patient whose planted regions hold the brightest voxels gets a higher 99.5th percentile, so every other
# voxel is darker, in every slice (docs/fmri.md, "Slice window").
FMRI_WINDOWS = {"alff": None, "malff": (0.0, 3.0), "falff": (0.0, 1.0), "reho": (0.0, 3.0), "rfcs": (0.0, 1.0)}


@dataclass(frozen=True)
class FmriDemoConfig:
    """The synthetic BOLD cohort (headmri.demo.bold) the fMRI branch runs on when no derivatives are given."""

    seed: int = 0
    group_sizes: Mapping[str, int] = field(default_factory=lambda: {"HC": 10, "MWoA": 10, "MWA": 10})
    volumes: int = 170
    tr: float = 2.0
    effects_tsv: str | None = None  # planted effects (headmri.demo.bold.read_bold_effects); None: the paper's regions


@dataclass(frozen=True)
class FmriConfig:
    """The fMRI branch (docs/fmri.md): resting-state BOLD in MNI space -> indicator maps per subject, each
    selected one an image source on the AAL atlas, plus SVM and random-forest baselines on RFCS vectors.

    Input: ``derivatives_dir`` (fMRIPrep-style) with ``bold`` and ``confounds_file`` glob patterns
    (``{subject}`` is the label), the mask named like the BOLD with ``desc-preproc_bold.nii.gz`` replaced by
    ``mask``, the sidecar beside the BOLD (.json); None: the synthetic cohort of ``demo``. ``space``: the
    space every BOLD must be in (and preferred among a session's runs). Each session is its own image;
    ``runs`` chooses among several runs of one session: ``first`` or ``last`` in name order, or ``all``
    (each its own image; headmri.fmri.inputs). Processing (``headmri.fmri.indicators.IndicatorSettings``):
    ``drop_volumes``, ``confounds`` (columns regressed), ``smooth_fwhm`` (mm; amplitude indicators only),
    ``reho_neighbourhood`` (7, 19, 27), ``voxel_mm`` (the MNI output grid, 3 = SPM's 61 x 73 x 61).
    ``sources``: the indicators that become image sources (named as the indicator, axial slices on AAL),
    trained with ``encoders`` (empty: model.encoder), each sliced with its ``windows`` entry (None: per
    subject percentiles). ``baselines``: scikit-learn models on the RFCS
    vectors, on the task's split and, with ``loso``, leave-one-subject-out.
    """

    enabled: bool = False
    derivatives_dir: str | None = None
    bold: str = "sub-{subject}/**/func/sub-{subject}_*task-rest*_space-*_desc-preproc_bold.nii.gz"
    mask: str = "desc-brain_mask.nii.gz"
    confounds_file: str = "sub-{subject}/**/func/sub-{subject}_*task-rest*_desc-confounds_timeseries.tsv"
    space: str = "MNI152NLin6Asym"
    runs: str = "first"  # several runs of one session: first | last | all
    drop_volumes: int = 10
    confounds: tuple[str, ...] = ("csf", "white_matter")
    smooth_fwhm: float = 4.0
    reho_neighbourhood: int = 27
    voxel_mm: int = 3
    sources: tuple[str, ...] = ("malff", "falff", "reho", "rfcs")
    axis: int = 2
    encoders: tuple[str, ...] = ()
    baselines: tuple[str, ...] = ("svm", "random_forest")
    loso: bool = True
    importance_repeats: int = 30
    windows: Mapping[str, tuple[float, float] | None] = field(default_factory=lambda: dict(FMRI_WINDOWS))
    demo: FmriDemoConfig = field(default_factory=FmriDemoConfig)

    def __post_init__(self) -> None:
        if isinstance(self.demo, Mapping):  # a plain mapping (the validated config) -> the dataclass
            object.__setattr__(self, "demo", _section(FmriDemoConfig, self.demo))
        unknown_windows = [s for s in self.windows if s not in FMRI_INDICATORS]
        if unknown_windows:
            raise ConfigError(f"fmri.windows names {unknown_windows}; the indicators are {list(FMRI_INDICATORS)}")
        object.__setattr__(self, "windows", FMRI_WINDOWS | {k: None if v is None else tuple(v) for k, v in self.windows.items()})
        unknown = [s for s in self.sources if s not in FMRI_INDICATORS]
        if unknown:
            raise ConfigError(f"fmri.sources names {unknown}; the indicators are {list(FMRI_INDICATORS)}")
        if self.reho_neighbourhood not in REHO_NEIGHBOURHOODS:
            raise ConfigError(f"fmri.reho_neighbourhood must be one of {list(REHO_NEIGHBOURHOODS)}, got {self.reho_neighbourhood}")
        if 180 % self.voxel_mm or 216 % self.voxel_mm:
            raise ConfigError(f"fmri.voxel_mm must divide the MNI box (180 x 216 x 180 mm), got {self.voxel_mm}")
        if self.runs not in FMRI_RUN_CHOICES:
            raise ConfigError(f"fmri.runs must be one of {list(FMRI_RUN_CHOICES)}, got {self.runs!r}")
        if "{subject}" not in self.bold or "{subject}" not in self.confounds_file:
            raise ConfigError("fmri.bold and fmri.confounds_file are patterns with {subject} (the participant label)")

    @property
    def is_demo(self) -> bool:
        return self.derivatives_dir is None

    def indicator_sources(self) -> tuple[SourceConfig, ...]:
        """One image source per selected indicator: its map per subject, the 3 mm mask, the AAL atlas and
        label table (path-table keys the fMRI rules write), axial slices."""
        return tuple(SourceConfig(name=name, image=f"fmri_{name}", axis=self.axis, encoders=tuple(self.encoders),
                                  window=self.windows[name], **FMRI_SOURCE_KEYS)
                     for name in self.sources) if self.enabled else ()

    def settings(self) -> dict[str, Any]:
        """Keyword arguments of headmri.fmri.indicators.IndicatorSettings but the grid (``voxel_mm``)."""
        return {"drop_volumes": int(self.drop_volumes), "confounds": tuple(self.confounds),
                "smooth_fwhm": float(self.smooth_fwhm), "reho_neighbourhood": int(self.reho_neighbourhood)}


@dataclass(frozen=True)
class Config:
    tasks: tuple[Task, ...]
    groups: tuple[str, ...] = ("HC", "migraine", "APTH", "PPTH")
    bids_dir: str | None = None
    participants_tsv: str | None = None
    dicom_dir: str | None = None
    subjects: tuple[str, ...] = ()
    runs: str = "first"  # several T1w files of one session: first | last | best | all (headmri.inputs)
    results_dir: str = "results"
    demo: DemoConfig = field(default_factory=DemoConfig)
    preprocessing: PreprocessingConfig = field(default_factory=PreprocessingConfig)
    slices: SliceConfig = field(default_factory=SliceConfig)
    splits: SplitConfig = field(default_factory=SplitConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    explain: ExplainConfig = field(default_factory=ExplainConfig)
    sources: tuple[SourceConfig, ...] = (SourceConfig(),)  # the config's, then fmri's indicator sources
    fmri: FmriConfig = field(default_factory=FmriConfig)

    @property
    def is_demo(self) -> bool:
        """The structural demo cohort: no BIDS dataset (and a structural source to run it for)."""
        return self.bids_dir is None

    @property
    def structural(self) -> bool:
        """Whether any source needs the T1w front half (every source that is not an fMRI indicator)."""
        indicators = {s.name for s in self.fmri.indicator_sources()}
        return any(s.name not in indicators for s in self.sources)

    def source(self, name: str) -> SourceConfig:
        """The named source with its defaults filled in (``SourceConfig.resolved``)."""
        for source in self.sources:
            if source.name == name:
                return source.resolved(self.slices, self.model)
        raise ConfigError(f"no source named {name!r}; sources are {[s.name for s in self.sources]}")

    def task(self, name: str) -> Task:
        for task in self.tasks:
            if task.name == name:
                return task
        raise ConfigError(f"no task named {name!r}; tasks are {[t.name for t in self.tasks]}")

    def task_training(self, name: str) -> TrainingConfig:
        """The named task's training: ``training.objective: mil`` applies to two-class tasks (controls and
        patients); a task of more classes trains on every slice (``objective: slices``)."""
        if self.training.objective == "mil" and len(self.task(name).classes) != 2:
            return replace(self.training, objective="slices")
        return self.training

    def aggregation_for(self, training: TrainingConfig) -> str:
        """How a job trained with ``training`` scores a subject from its slices: as its bags were
        (``top``) under multiple-instance training, ``evaluation.aggregation`` otherwise."""
        return "top" if training.objective == "mil" else self.evaluation.aggregation


def _section(cls, values: Mapping[str, Any] | None):
    values = dict(values or {})
    known = {f.name for f in fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"unknown keys {sorted(unknown)} for {cls.__name__}")
    for key, value in list(values.items()):
        if isinstance(value, list):
            values[key] = tuple(value)
    return cls(**values)


def parse_subjects(value: Any) -> tuple[str, ...]:
    """Accept a list or a comma-separated string (as `--config subjects=01,02` gives); strip `sub-`."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    labels = [item.strip() for item in items if item.strip()]
    return tuple(label[4:] if label.startswith("sub-") else label for label in labels)


def from_mapping(raw: Mapping[str, Any]) -> Config:
    """Build the typed configuration from a schema-validated mapping, and check what the schema cannot."""
    raw = dict(raw)
    tasks = tuple(Task(name=t["name"], classes=tuple(t["classes"]),
                       pool=tuple((c, tuple(g)) for c, g in (t.get("pool") or {}).items())) for t in raw.pop("tasks"))
    fmri = _section(FmriConfig, raw.pop("fmri", None))
    declared = raw.pop("sources", None)  # absent: the T1w source; [] (with fmri on): only the indicators
    sources = tuple(_section(SourceConfig, s) for s in ([{}] if declared is None else declared))
    prep = dict(raw.pop("preprocessing", {}) or {})
    prep["freesurfer"] = _section(FreeSurferConfig, prep.get("freesurfer"))
    demo = dict(raw.pop("demo", {}) or {})
    cfg = Config(
        tasks=tasks,
        groups=tuple(raw.pop("groups", Config.groups)),
        subjects=parse_subjects(raw.pop("subjects", ())),
        demo=DemoConfig(**demo),
        preprocessing=PreprocessingConfig(**prep),
        slices=_section(SliceConfig, raw.pop("slices", None)),
        splits=_section(SplitConfig, raw.pop("splits", None)),
        model=_section(ModelConfig, raw.pop("model", None)),
        training=_section(TrainingConfig, raw.pop("training", None)),
        baseline=_section(BaselineConfig, raw.pop("baseline", None)),
        evaluation=_section(EvaluationConfig, raw.pop("evaluation", None)),
        compute=_section(ComputeConfig, raw.pop("compute", None)),
        explain=_section(ExplainConfig, raw.pop("explain", None)),
        sources=sources + fmri.indicator_sources(),
        fmri=fmri,
        **raw,
    )
    _check_sources(cfg.sources)
    _check_leave_one_subject_out(cfg)
    _check_validation(cfg)
    _check_tasks(cfg.tasks, cfg.groups)
    _check_objective(cfg)
    _check_fmri(cfg)
    if cfg.is_demo and cfg.structural:
        unknown = [g for g in cfg.demo.group_sizes if g not in cfg.groups]
        if unknown:
            raise ConfigError(f"demo.group_sizes names groups {unknown} that are not in groups {list(cfg.groups)}")
    if cfg.model.baseline_resnet3d:
        try:  # the baseline's own epochs must leave room for training.min_epochs
            cfg.baseline.training(cfg.training)
        except ConfigError as error:
            raise ConfigError(f"with the baseline's settings (baseline section): {error}") from error
    if cfg.preprocessing.parcellation == "freesurfer" and not cfg.preprocessing.freesurfer.license:
        raise ConfigError("the freesurfer parcellation backend needs preprocessing.freesurfer.license (license.txt path)")
    return cfg


def _check_leave_one_subject_out(cfg: Config) -> None:
    """Leave-one-subject-out tests one participant per fold: explaining only test patients would leave
    every control's fold without a patient (the explain job stops there), and no fold has a test patient and
    a test control for the contrast."""
    if cfg.splits.leave_one_subject_out and cfg.explain.patients == "test":
        raise ConfigError("splits.scheme loso tests one participant per fold, so with explain.patients: test the folds "
                          "that test a control have no patient to explain; set explain.patients: all (each fold's "
                          "model explains every patient of the fold, training patients included) or use a k-fold scheme "
                          "for the explanations")


def _check_validation(cfg: Config) -> None:
    """Without validation subjects (``splits.val_per_class: 0``) only ``training.selection: last`` can choose."""
    if cfg.splits.val_per_class == 0 and cfg.training.selection != "last":
        raise ConfigError(f"splits.val_per_class is 0, so there are no validation subjects for training.selection "
                          f"{cfg.training.selection!r} to choose a checkpoint on; set training.selection: last (the "
                          f"last epoch) or give every fold validation subjects")


def _check_objective(cfg: Config) -> None:
    """``evaluation.aggregation: top`` scores a patient's top slices against the rest: two classes per task.
    (``training.objective: mil`` needs no check: ``Config.task_training`` trains tasks of more classes on every
    slice, and ``Config.aggregation_for`` scores the two-class ones ``top``.)"""
    wide = [t.name for t in cfg.tasks if len(t.classes) != 2]
    if cfg.evaluation.aggregation == "top" and wide:
        raise ConfigError(f"evaluation.aggregation top scores two-class tasks; the task(s) {wide} have more classes: "
                          f"use mean, max or median (training.objective mil scores its two-class tasks top by itself)")


def _check_tasks(tasks: tuple[Task, ...], groups: tuple[str, ...]) -> None:
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ConfigError(f"task names must be unique, got {names}")
    for task in tasks:
        stray = [c for c in dict(task.pool) if c not in task.classes]
        if stray:
            raise ConfigError(f"task {task.name!r} pools groups into {stray}, which are not among its classes {list(task.classes)}")
        unknown = [g for g in task.groups if g not in groups]
        if unknown:
            raise ConfigError(f"task {task.name!r} names classes {unknown} that are not in groups {list(groups)}")
        twice = sorted({g for g in task.groups if task.groups.count(g) > 1})
        if twice:
            raise ConfigError(f"task {task.name!r} puts the group(s) {twice} in more than one class")


def _check_fmri(cfg: "Config") -> None:
    """The fMRI branch's demo cohort has no T1w: it runs without structural sources; its groups must be
    configured ones."""
    if not cfg.fmri.enabled:
        return
    if cfg.model.baseline_resnet3d:  # its volumes are on the 1 mm template grid (headmri.training.volumes)
        raise ConfigError("model.baseline_resnet3d trains on every source's image on the 1 mm MNI template grid; the "
                          f"fMRI indicator maps are on a {cfg.fmri.voxel_mm} mm grid: switch the 3D baseline off "
                          "(model.baseline_resnet3d: false) or run the fMRI branch on its own")
    if cfg.fmri.is_demo:
        if cfg.structural:
            raise ConfigError("the synthetic BOLD cohort (fmri.enabled without fmri.derivatives_dir) has no T1w images: "
                              f"set `sources: []` so that only the fMRI indicators {list(cfg.fmri.sources)} are sources")
        unknown = [g for g in cfg.fmri.demo.group_sizes if g not in cfg.groups]
        if unknown:
            raise ConfigError(f"fmri.demo.group_sizes names groups {unknown} that are not in groups {list(cfg.groups)}")
    elif cfg.bids_dir is None and cfg.participants_tsv is None:
        raise ConfigError("fmri.derivatives_dir needs the participants table: set bids_dir or participants_tsv")


def _check_sources(sources: tuple[SourceConfig, ...]) -> None:
    if not sources:
        raise ConfigError("no image source: declare one under `sources` or switch the fMRI branch on (fmri.enabled)")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ConfigError(f"source names must be unique, got {names}")
    bad = [n for n in names if not n.isalnum()]
    if bad:
        raise ConfigError(f"source names are path entities: letters and digits only, got {bad}")


def load(config_path: str | Path, overrides: Mapping[str, Any] | None = None) -> Config:
    """Read a config file, validate it against the schema (filling defaults) and type it; for tests and tools."""
    import yaml
    from snakemake.utils import validate

    with open(config_path) as handle:
        raw = yaml.safe_load(handle) or {}
    raw.update(overrides or {})
    validate(raw, str(SCHEMA_DIR / "config.schema.yaml"), set_default=True)
    return from_mapping(raw)


SCHEMA_DIR = Path(__file__).resolve().parent.parent / "workflow" / "schemas"
