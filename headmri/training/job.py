"""The training job of one task x model x fold: train, select on validation subjects, then evaluate.

Order of events, which is what keeps the test set blind:
1. the split is checked for leakage; the fold's train / val / test subjects are read (test files are
   only checked to exist, so a missing one fails now rather than after hours of training);
2. each epoch trains on the oversampled training subjects and scores the validation subjects
   (slice probabilities -> subject probabilities by the configured aggregation -> AUC and loss);
   the best epoch so far from ``min_epochs`` on is kept (``selection``: lowest validation loss, AUC
   breaking ties, or highest AUC that rests on probabilities that actually differ, loss breaking
   ties), and training stops after ``patience`` epochs without improvement;
3. only then is the best checkpoint reloaded and the test subjects read and scored;
4. the fold is checked for having learned at all (``headmri.evaluation.learned``: training loss
   against chance, spread of the subject probabilities); the verdict goes into every row of its
   ``metrics.tsv`` and a fold that did not learn gets a WARNING in the log.

A resume state (model, optimiser, scheduler, random generators, history, early-stopping state) lets a
killed job continue from its last saved epoch; it is only used when it was written for the same inputs
and settings, otherwise the job starts afresh. Each new best epoch writes it as the best checkpoint
(which thus never duplicates a second file); other epochs write it as the resume file every
``resume_every`` epochs and at the end; the newer of the two is resumed from. Both are written atomically
by a background thread while the next epoch trains (``CheckpointWriter``). The final outputs are
written at the very end, each atomically, and the resume files removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from headmri.atomic import write_tsv
from headmri.config import TrainingConfig
from headmri.errors import ConfigError, InputError
from headmri.evaluation import aggregate_subjects, evaluate_fold, fold_metrics
from headmri.evaluation.learned import check_learned, probability_spread
from headmri.model_inputs import ModelInput, model_input
from headmri.models import build_classifier, encoder_input_size, place
from headmri.models.freezing import apply_freeze, resolve_freeze
from headmri.models.resnet3d import DEFAULT_VOXEL_SIZE_MM
from headmri.paths import TRAIN_OUTPUTS
from headmri.slices.reference import ControlReference
from headmri.splits import check_leakage, fold_table, read_split
from headmri.training.checkpoint import CheckpointWriter, load_resume, rng_state, save_trained, set_rng_state
from headmri.training.feeds import check_files, feed_for, rows_batches
from headmri.training.loop import compile_model, make_optimizer, predict, train_epoch
from headmri.training.oversample import oversample_subjects
from headmri.training.predict import slice_predictions, subject_loss
from headmri.training.schedule import warmup_cosine

log = logging.getLogger(__name__)

OUTPUTS = TRAIN_OUTPUTS  # the path table's (headmri.paths), which the workflow names its outputs from
RESUME_FILE = "checkpoint_last.pt"
BEST_FILE = "checkpoint_best.pt"
HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "val_auc", "val_prob_spread", "lr", "seconds"]


@dataclass(frozen=True)
class FoldSubjects:
    """The split rows of one fold: participant_id, label, group, class_index, fold, split."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame


def read_fold(split_tsv: str | Path, fold: int, classes: Sequence[str]) -> FoldSubjects:
    """Check the whole split for leakage, then return this fold's sets, checked against ``classes``."""
    split = read_split(split_tsv)
    check_leakage(split)
    rows = fold_table(split, fold)
    classes = list(classes)
    foreign = sorted(set(rows["group"]) - set(classes))
    if foreign:
        raise InputError(f"fold {fold} holds groups {foreign} that are not the task's classes {classes}", path=split_tsv)
    wrong = rows[rows["class_index"].astype(int) != rows["group"].map(classes.index)]
    if not wrong.empty:
        raise InputError(
            f"class_index disagrees with the task's class order {classes} for {list(wrong['participant_id'][:5])}",
            path=split_tsv,
        )
    parts = {s: rows[rows["split"] == s].sort_values("participant_id", ignore_index=True) for s in ("train", "val", "test")}
    lacking = [c for c in classes if c not in set(parts["train"]["group"])]
    if lacking:
        raise InputError(f"fold {fold} has no training subjects of {lacking}", path=split_tsv)
    return FoldSubjects(**parts)


def resolve_inputs(
    source: Mapping[str, str | Path] | str | Path, participant_ids: Sequence[str], *, pattern: str
) -> dict[str, Path]:
    """participant_id -> input file, from a mapping (keys with or without ``sub-``) or a folder
    (``pattern`` formatted with the participant_id, e.g. ``{}_slices.npy``). Every file must exist."""
    if isinstance(source, Mapping):
        by_id = {(k if str(k).startswith("sub-") else f"sub-{k}"): Path(v) for k, v in source.items()}
    else:
        by_id = {pid: Path(source) / pattern.format(pid) for pid in participant_ids}
    out = {}
    for pid in participant_ids:
        if pid not in by_id:
            raise InputError("no input file was given for this subject", subject=pid)
        if not by_id[pid].is_file():
            raise InputError("the input file does not exist", subject=pid, path=by_id[pid])
        out[pid] = by_id[pid]
    return out


@dataclass
class EarlyStopping:
    """The best epoch so far on the validation subjects, and when to stop (docs/training.md, "Selection").

    ``rule`` ``"loss"``: the lowest subject-level cross-entropy, a higher AUC breaking ties; ``"auc"``: the
    highest AUC, a lower loss breaking ties; ``"last"``: the latest epoch (the validation subjects are
    still scored and recorded, but choose nothing). For loss and auc an AUC only counts when the validation
    probabilities of the disease class(es) differ by at least ``auc_min_spread`` (with one validation
    subject per class an untrained model reaches AUC 1.0 on a 1e-5 difference); an AUC that does not
    count, or a NaN one, ranks below every number, as does a NaN loss. Epochs before ``min_epochs`` are
    never selected and do not count towards ``patience``.
    """

    patience: int
    rule: str = "loss"
    min_epochs: int = 1
    auc_min_spread: float = 0.0
    best_key: tuple[float, float] | None = None
    best_epoch: int = 0
    since_best: int = 0

    def counted_auc(self, val_auc: float, val_spread: float) -> float:
        """``val_auc``, or NaN when the probabilities it rests on do not differ enough."""
        return val_auc if val_spread >= self.auc_min_spread else math.nan  # a NaN spread fails too

    def key(self, val_auc: float, val_loss: float, val_spread: float) -> tuple[float, float]:
        auc = self.counted_auc(val_auc, val_spread)
        auc_key = -math.inf if math.isnan(auc) else auc
        loss_key = -math.inf if math.isnan(val_loss) else -val_loss
        return (loss_key, auc_key) if self.rule == "loss" else (auc_key, loss_key)

    def update(self, epoch: int, val_auc: float, val_loss: float, val_spread: float) -> bool:
        """Record an epoch; True when it is the new best."""
        if epoch < self.min_epochs:
            return False
        key = (float(epoch), 0.0) if self.rule == "last" else self.key(val_auc, val_loss, val_spread)
        if self.best_key is None or key > self.best_key:
            self.best_key, self.best_epoch, self.since_best = key, epoch, 0
            return True
        self.since_best += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.best_key is not None and self.since_best >= self.patience

    def state(self) -> dict:
        """What the resume file keeps (the rule and its settings come from the fingerprinted config)."""
        return {"best_key": None if self.best_key is None else list(self.best_key), "best_epoch": self.best_epoch,
                "since_best": self.since_best}

    @classmethod
    def for_training(cls, training: TrainingConfig, state: Mapping | None = None) -> "EarlyStopping":
        stopping = cls(training.patience, training.selection, training.min_epochs, training.auc_min_spread)
        if state is not None:
            key = state["best_key"]
            stopping.best_key = None if key is None else tuple(key)
            stopping.best_epoch, stopping.since_best = int(state["best_epoch"]), int(state["since_best"])
        return stopping


@dataclass
class Progress:
    """Everything about the run so far that the resume file carries besides tensors."""

    epoch: int = 0
    history: list[dict] = field(default_factory=list)
    stopping: EarlyStopping | None = None
    finished: bool = False


@contextlib.contextmanager
def reproducible(seed: int, threads: int | None, device: torch.device) -> Iterator[None]:
    """Seed python, numpy and torch; on CPU also fix the thread count and ask torch for deterministic
    kernels (cheap there). Restores the process-wide settings afterwards."""
    previous = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled())
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(int(threads))
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(previous[0])
        torch.use_deterministic_algorithms(previous[1], warn_only=previous[2])


class _Data:
    """The loaders of one fold, built by the feed of the model's input kind (``headmri.training.feeds``)."""

    def __init__(self, feed, files: dict[str, Path], training: TrainingConfig, device: torch.device,
                 reference: ControlReference | None = None):
        self.feed, self.files, self.training, self.device = feed, files, training, device
        self.reference = reference  # training.reference: controls (headmri.slices.reference)

    def loader(self, rows: pd.DataFrame, *, train: bool, seed: int):
        batches = rows_batches(rows, self.files, self.training, self.device, self.reference)
        return self.feed.loader(batches, train=train, seed=seed)

    def train_loader(self, rows: pd.DataFrame, epoch: int):
        """The oversampled training loader of one epoch (0-based), shuffled from (seed, epoch)."""
        picked = oversample_subjects(rows["class_index"].astype(int).to_numpy(), seed=self.training.seed, epoch=epoch)
        loader = self.loader(rows.iloc[picked], train=True, seed=self.training.seed)
        loader.set_epoch(epoch)
        return loader


def _fingerprint(**parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _newest_state(out_dir: Path, fingerprint: str) -> dict | None:
    """The newer of the best checkpoint and the resume file (both are complete resume states) among
    those written for ``fingerprint``."""
    found = []
    for name in (BEST_FILE, RESUME_FILE):
        state = load_resume(out_dir / name)
        if state is None:
            continue
        if state.get("fingerprint") != fingerprint:
            log.warning("%s was written for other inputs or settings; not resuming from it", out_dir / name)
            continue
        found.append((int(state["epoch"]), name == BEST_FILE, state))
    return max(found, key=lambda item: item[:2])[2] if found else None


def _restore(out_dir: Path, fingerprint: str, model, optimizer, scheduler, training: TrainingConfig) -> Progress:
    fresh = Progress(stopping=EarlyStopping.for_training(training))
    state = _newest_state(out_dir, fingerprint)
    if state is None:
        return fresh
    best = load_resume(out_dir / BEST_FILE)
    if state["stopping"]["best_epoch"] and (best is None or best.get("epoch") != state["stopping"]["best_epoch"]):
        return fresh  # the best checkpoint it refers to is gone
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    stopping = EarlyStopping.for_training(training, state["stopping"])
    log.info("resuming from %s after epoch %d (best so far: epoch %d)", out_dir, state["epoch"], stopping.best_epoch)
    return Progress(epoch=state["epoch"], history=list(state["history"]), stopping=stopping, finished=state["finished"])


def _save_progress(writer: CheckpointWriter, out_dir: Path, fingerprint: str, progress: Progress,
                   parts: Mapping[str, Any], *, best: bool, every: int) -> None:
    """The resume state of the epoch just finished (``parts``: model, optimizer, scheduler): as the best
    checkpoint when it is the best epoch, else as the resume file every ``every`` epochs and once
    training is over."""
    if not best and not progress.finished and progress.epoch % every:
        return
    stopping = progress.stopping
    writer.save({
        "fingerprint": fingerprint,
        "epoch": progress.epoch,
        "history": progress.history,
        "finished": progress.finished,
        "stopping": stopping.state(),
        **{name: part.state_dict() for name, part in parts.items()},
        "rng": rng_state(),
    }, out_dir / (BEST_FILE if best else RESUME_FILE))


@dataclass(frozen=True)
class FoldJob:
    """What one training job is: the task and its classes, the fold, the model's name in the tables (the
    ``model-<key>`` path entity) and the image source its inputs come from (config ``sources``)."""

    task: str
    classes: tuple[str, ...]
    fold: int
    model_name: str
    source: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "fold", int(self.fold))


@dataclass(frozen=True)
class EncoderChoice:
    """Which network is trained, from which weights, and which of its parameters train (``freeze``: config
    ``model.freeze``, headmri.models.freezing); ``voxel_size_mm`` only concerns the volume baseline (None: its
    default)."""

    encoder: str
    checkpoint: str | Path | None = None
    pretrained: bool = False
    voxel_size_mm: float | None = DEFAULT_VOXEL_SIZE_MM
    freeze: str = "auto"

    def __post_init__(self) -> None:
        if self.voxel_size_mm is None:
            object.__setattr__(self, "voxel_size_mm", DEFAULT_VOXEL_SIZE_MM)

    @property
    def input(self) -> ModelInput:
        return model_input(self.encoder)

    def feed(self):
        """How this encoder's input is checked, loaded and jittered (``headmri.training.feeds``)."""
        return feed_for(self.input, self.voxel_size_mm)


@dataclass
class _Run:
    """The live objects of one training run: the job, its settings, its subjects and the network."""

    job: FoldJob
    training: TrainingConfig
    aggregation: str
    subjects: FoldSubjects
    files: dict[str, Path]
    out_dir: Path
    device: torch.device
    model: torch.nn.Module | None = None
    data: _Data | None = None
    val_loader: object | None = None
    optimizer: torch.optim.Optimizer | None = None
    scheduler: object | None = None
    fingerprint: str = ""


@dataclass(frozen=True)
class FoldSettings:
    """How a training job runs: subject aggregation (``evaluation.aggregation``), the slices' size
    (``slices.size``, checked against the encoder), CPU threads, device (None: cuda when torch sees one),
    progress bars, ``torch.compile`` (config ``compute.compile``; a string names its backend, for tests and
    benchmarks) and how often the resume file is written (``compute.resume_every``; best epochs always)."""

    aggregation: str = "mean"
    slice_size: int | None = None
    threads: int | None = None
    device: str | None = None
    progress: bool = True
    compile: bool | str = False
    resume_every: int = 1


def train_fold(split_tsv: str | Path, out_dir: str | Path, job: FoldJob, choice: EncoderChoice, training: TrainingConfig,
               inputs: Mapping[str, str | Path] | str | Path, settings: FoldSettings = FoldSettings()) -> pd.DataFrame:
    """Train ``choice.encoder`` on fold ``job.fold`` of ``split_tsv`` and write ``OUTPUTS`` into ``out_dir``;
    returns the metrics rows.

    ``inputs`` are the model's inputs, of the kind its encoder takes (``choice.input``,
    ``headmri.model_inputs``): participant_id -> file (``sub-X_slices.npy`` with its ``.json`` beside it,
    or an MNI-space brain NIfTI for the 3D baseline), keys with or without ``sub-``, or the folder holding
    them (``sub-X_slices.npy`` / ``sub-X_T1w.nii.gz``). ``settings.slice_size`` is the size the slices
    were built with (config ``slices.size``), checked against the encoder before any work.
    """
    subjects, files = _fold_inputs(split_tsv, job, choice, inputs, settings.slice_size)
    if subjects.val.empty and training.selection != "last":
        raise InputError(f"fold {job.fold} has no validation subjects, so selection {training.selection!r} cannot "
                         f"choose a checkpoint (training.selection: last needs none)", path=split_tsv)
    run = _Run(job, training, settings.aggregation, subjects, files, Path(out_dir),
               torch.device(settings.device or ("cuda" if torch.cuda.is_available() else "cpu")))
    run.out_dir.mkdir(parents=True, exist_ok=True)
    log.info("task %s, model %s (%s), fold %d on %s with %d CPU threads: %d train, %d val, %d test subjects", job.task,
             job.model_name, choice.encoder, job.fold, run.device, int(settings.threads or torch.get_num_threads()),
             len(subjects.train), len(subjects.val), len(subjects.test))
    log.info("training objective %s; a subject's probability from its slices: %s", training.objective, run.aggregation)
    with reproducible(training.seed, settings.threads, run.device):
        _build(run, choice, settings.compile)
        state = _restore(run.out_dir, run.fingerprint, run.model, run.optimizer, run.scheduler, training)
        _train_epochs(run, state, settings)
        best_epoch, per_slice, per_subject, metrics = _evaluate_best(run)
        fitted = aggregate_subjects(_scored_slices(run, run.subjects.train), run.aggregation)  # not written
    _add_learned(run, state, best_epoch, pd.concat([fitted, per_subject], ignore_index=True), metrics)
    _write_outputs(run, state, best_epoch, per_slice, per_subject, metrics)
    return metrics


def _fold_inputs(split_tsv: str | Path, job: FoldJob, choice: EncoderChoice,
                 inputs: Mapping[str, str | Path] | str | Path, slice_size: int | None) -> tuple[FoldSubjects, dict[str, Path]]:
    """The fold's subjects and every one's input file and slice geometry, checked before any work (headers
    only): every subject is scored after training (the learned check) and the control reference reads them."""
    spec, feed = choice.input, choice.feed()
    input_size = encoder_input_size(choice.encoder)  # also rejects an unknown encoder name, before any reading
    feed.check_size(choice.encoder, input_size, slice_size)
    subjects = read_fold(split_tsv, job.fold, job.classes)
    everyone = pd.concat([subjects.train, subjects.val, subjects.test])["participant_id"].tolist()
    if inputs is None:
        raise ConfigError(f"encoder {choice.encoder!r} needs {spec.main} as input")
    files = resolve_inputs(inputs, everyone, pattern=spec.folder_pattern)
    check_files(feed, files, input_size)
    return subjects, files


def _build(run: _Run, choice: EncoderChoice, compile: bool | str = False) -> None:
    """The network, its loaders, optimiser and schedule, and the fingerprint of everything that decides
    the run (the resume file is only used when it matches). The order of these calls is the random
    generators' order, so it is part of the reproducibility contract."""
    job, training = run.job, run.training
    run.model = build_classifier(choice.encoder, len(job.classes), pretrained=choice.pretrained,
                                 checkpoint=choice.checkpoint, classes=job.classes, voxel_size_mm=choice.voxel_size_mm)
    freeze = resolve_freeze(choice.freeze, choice.encoder,
                            weights_loaded=choice.encoder == "biomedclip" or choice.pretrained or choice.checkpoint is not None)
    apply_freeze(run.model, freeze)
    run.model = place(run.model, run.device)
    if compile:
        compile_model(run.model, **({"backend": compile} if isinstance(compile, str) else {}))
    feed = choice.feed()
    run.data = _Data(feed, run.files, training, run.device, _control_reference(run, feed))
    run.val_loader = (None if run.subjects.val.empty  # splits.val_per_class 0: selection last, nothing to score
                      else run.data.loader(run.subjects.val, train=False, seed=training.seed))
    steps_per_epoch = len(run.data.train_loader(run.subjects.train, 0))
    run.optimizer = make_optimizer(run.model, lr=training.lr, weight_decay=training.weight_decay, device=run.device)
    run.scheduler = warmup_cosine(run.optimizer, warmup_steps=training.warmup_epochs * steps_per_epoch,
                                  total_steps=training.epochs * steps_per_epoch)
    run.fingerprint = _fingerprint(
        task=job.task, classes=job.classes, fold=job.fold, encoder=choice.encoder, checkpoint=str(choice.checkpoint),
        pretrained=choice.pretrained, freeze=freeze, training=asdict(training), aggregation=run.aggregation,
        voxel_size_mm=choice.voxel_size_mm, train=run.subjects.train[["participant_id", "class_index"]].values.tolist(),
        val=run.subjects.val["participant_id"].tolist(), steps_per_epoch=steps_per_epoch,
    )


def _control_reference(run: _Run, feed) -> ControlReference | None:
    """``training.reference: controls``: the mean slices of the fold's training controls (class 0)."""
    if run.training.reference != "controls":
        return None
    train = run.subjects.train
    controls = sorted(train.loc[train["class_index"].astype(int) == 0, "participant_id"])
    reference = feed.control_reference(run.files, controls)
    if reference is not None:
        log.info("control reference: every slice minus the mean slice of the %d training controls %s (each of "
                 "them against the other %d)", len(controls), controls, len(controls) - 1)
    return reference


def _train_epochs(run: _Run, state: Progress, settings: FoldSettings) -> None:
    """Epochs until the last one or early stopping; resume states saved by a background writer."""
    training = run.training
    writer = CheckpointWriter()
    first_step_note = "includes torch.compile's compilation" if settings.compile else None
    augment = run.data.feed.augment(training)
    loss_fn = run.data.feed.loss(training)  # training.objective (headmri.training.mil)
    while not state.finished:
        epoch = state.epoch + 1
        started = time.perf_counter()
        train_loss = train_epoch(
            run.model, run.data.train_loader(run.subjects.train, epoch - 1), run.optimizer, run.scheduler,
            device=run.device, grad_clip=training.grad_clip, desc=f"epoch {epoch}/{training.epochs}",
            progress=settings.progress, first_step_note=first_step_note, augment=augment, loss_fn=loss_fn,
        )
        first_step_note = None
        val_loss, val_auc, val_spread = _validate(run)
        best = state.stopping.update(epoch, val_auc, val_loss, val_spread)
        seconds = time.perf_counter() - started
        state.history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_auc": val_auc,
                              "val_prob_spread": val_spread, "lr": run.scheduler.get_last_lr()[0],
                              "seconds": round(seconds, 3)})
        state.epoch = epoch
        state.finished = epoch >= training.epochs or state.stopping.should_stop
        _save_progress(writer, run.out_dir, run.fingerprint, state,
                       {"model": run.model, "optimizer": run.optimizer, "scheduler": run.scheduler}, best=best,
                       every=settings.resume_every)
        scored = ("no validation subjects" if run.val_loader is None else
                  f"val loss {val_loss:.4f}, val AUC {val_auc:.3f} (probabilities differ by {val_spread:.2g})")
        log.info("epoch %d/%d: train loss %.4f, %s, lr %.2e, %.1f s%s", epoch, training.epochs, train_loss, scored,
                 run.scheduler.get_last_lr()[0], seconds, " (best)" if best else "")
    if state.stopping.should_stop and state.epoch < training.epochs:
        log.info("early stop after epoch %d: no validation improvement for %d epochs", state.epoch, training.patience)
    writer.close()
    log.info("resume states: %.2f s copying on the training thread, %.2f s writing in the background",
             writer.copy_seconds, writer.write_seconds)


def _validate(run: _Run) -> tuple[float, float, float]:
    """Validation loss, AUC and probability spread of the subjects (slices aggregated per subject); NaN
    without validation subjects."""
    job = run.job
    if run.val_loader is None:
        return math.nan, math.nan, math.nan
    found = predict(run.model, run.val_loader, device=run.device, progress=False)
    val_subjects = aggregate_subjects(slice_predictions(found, run.subjects.val, job.classes), run.aggregation)
    val_loss = subject_loss(val_subjects, job.classes)
    val_auc = float(fold_metrics(val_subjects, job.classes, task=job.task, model=job.model_name, fold=job.fold)["auc"].iloc[0])
    return val_loss, val_auc, probability_spread(val_subjects, job.classes)


def _evaluate_best(run: _Run) -> tuple[int, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Training is over: only now are the test subjects read. The selected epoch, slice and subject
    predictions of the validation and test subjects, and the fold's metrics rows."""
    job = run.job
    best_state = torch.load(run.out_dir / BEST_FILE, map_location="cpu", weights_only=True, mmap=True)
    run.model.load_state_dict(best_state["model"])
    log.info("selected epoch %d (selection: %s, from epoch %d on); scoring validation and test subjects",
             best_state["epoch"], run.training.selection, run.training.min_epochs)
    per_slice = pd.concat([_scored_slices(run, rows) for rows in (run.subjects.val, run.subjects.test) if not rows.empty],
                          ignore_index=True)
    per_subject, metrics = evaluate_fold(per_slice, job.classes, task=job.task, model=job.model_name, fold=job.fold,
                                         method=run.aggregation)
    return int(best_state["epoch"]), per_slice, per_subject, metrics


def _scored_slices(run: _Run, rows: pd.DataFrame) -> pd.DataFrame:
    """The current model's slice predictions of the subjects in ``rows``. The training job scores the
    training subjects too, for the learned check only (``_add_learned``; not written): with one test subject
    per class and no validation subjects the held-out probabilities are two numbers, and a learned model's
    near tie between them looked like a constant output. That pass costs about a third of an epoch."""
    kept = run.data.feed.kept_indices(run.files, list(rows["participant_id"]))
    found = predict(run.model, run.data.loader(rows, train=False, seed=run.training.seed), device=run.device,
                    progress=False)
    return slice_predictions(found, rows, run.job.classes, kept_indices=kept)


def _add_learned(run: _Run, state: Progress, best_epoch: int, everyone: pd.DataFrame, metrics: pd.DataFrame) -> None:
    """Whether the fold learned (``headmri.evaluation.learned``; ``everyone``: the subject predictions of
    every subject of the fold), in every metrics row; the source first."""
    job = run.job
    verdict = check_learned([row["train_loss"] for row in state.history], best_epoch, everyone, job.classes,
                            run.training.learned_check)
    for name, value in verdict.columns().items():
        metrics[name] = value
    if job.source is not None:
        metrics.insert(0, "source", job.source)
    if verdict.learned:
        log.info("the model learned: %s", verdict.reason)
    else:
        log.warning("task %s, model %s, fold %d DID NOT LEARN: %s. Its metrics are kept in the tables but left out "
                    "of the means, and its maps out of the rankings (explain.exclude_unlearned).",
                    job.task, job.model_name, job.fold, verdict.reason)


def _write_outputs(run: _Run, state: Progress, best_epoch: int, per_slice: pd.DataFrame, per_subject: pd.DataFrame,
                   metrics: pd.DataFrame) -> None:
    """The job's outputs, each written atomically, at the very end; then the resume files go."""
    out_dir, job = run.out_dir, run.job
    history = pd.DataFrame(state.history, columns=HISTORY_COLUMNS)
    history["selected"] = history["epoch"] == best_epoch
    write_tsv(per_slice, out_dir / "predictions_slices.tsv", float_format="%.6g")
    write_tsv(per_subject, out_dir / "predictions_subjects.tsv", float_format="%.6g")
    write_tsv(metrics, out_dir / "metrics.tsv", float_format="%.6g")
    write_tsv(history, out_dir / "history.tsv", float_format="%.6g")
    reference = run.data.reference
    save_trained(run.model, out_dir / "model.pt", task=job.task, fold=job.fold, model_name=job.model_name,
                 selected_epoch=best_epoch, aggregation=run.aggregation,
                 reference="none" if reference is None else "controls",
                 reference_controls=[] if reference is None else sorted(reference.controls))
    for name in (RESUME_FILE, BEST_FILE):
        (out_dir / name).unlink(missing_ok=True)
    for _, row in metrics.iterrows():
        log.info("%s subjects: accuracy %.3f, AUC %.3f, sensitivity %.3f, specificity %.3f", row["split"],
                 row["accuracy"], row["auc"], row["sensitivity"], row["specificity"])
