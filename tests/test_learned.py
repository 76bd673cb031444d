"""Folds that did not learn are caught, and checkpoint selection is not fooled by a tiny validation set."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from headmri.config import LearnedCheckConfig, TrainingConfig
from headmri.errors import ConfigError
from headmri.evaluation import fold_metrics
from headmri.evaluation.learned import check_learned, probability_spread, read_fold_learned
from headmri.training.job import EarlyStopping
from headmri.training.predict import subject_loss

CLASSES = ("HC", "migraine")
LN2 = math.log(2)


def subjects(p_migraine, labels=(0, 0, 1, 1), split="val") -> pd.DataFrame:
    """Subject-level predictions of a binary task: P(migraine) per subject, class 0 = HC, 1 = migraine."""
    p = np.asarray(p_migraine, float)
    return pd.DataFrame({"participant_id": [f"sub-{i:02d}" for i in range(len(p))], "split": split,
                         "class_index": list(labels), "prob_HC": 1 - p, "prob_migraine": p})


# --- the learned-or-not check ----------------------------------------------------------------------

def test_a_history_stuck_at_ln2_with_constant_probabilities_did_not_learn():
    history = [0.6934, 0.6931, 0.6932, 0.6930, 0.6931]
    constant = subjects(0.4955 + 1e-5 * np.arange(4))
    verdict = check_learned(history, 5, constant, CLASSES)
    assert verdict.learned is False
    assert verdict.chance_loss == pytest.approx(LN2)
    assert verdict.prob_spread == pytest.approx(3e-5, rel=1e-3)
    assert "never went below" in verdict.reason and "nearly constant" in verdict.reason


def test_a_history_that_falls_well_below_chance_with_spread_probabilities_learned():
    history = [0.69, 0.52, 0.21, 0.06]
    verdict = check_learned(history, 4, subjects([0.05, 0.3, 0.8, 0.97]), CLASSES)
    assert verdict.learned is True
    assert verdict.selected_train_loss == pytest.approx(0.06)
    assert verdict.prob_spread == pytest.approx(0.92)
    assert verdict.columns()["learned"] is True and verdict.columns()["selected_epoch"] == 4


def test_a_checkpoint_kept_from_before_the_model_learned_does_not_count():
    """The run learnt at epoch 3, but the model that is evaluated is epoch 1's."""
    verdict = check_learned([0.693, 0.692, 0.05], 1, subjects(0.5 + 1e-5 * np.arange(4)), CLASSES)
    assert verdict.learned is False
    assert "chosen before the model learned" in verdict.reason


def test_either_symptom_alone_is_enough():
    # loss at chance, probabilities spread (a random model): not learned
    assert not check_learned([0.70, 0.70], 2, subjects([0.3, 0.5, 0.4, 0.6]), CLASSES).learned
    # loss far below chance, probabilities constant (all subjects given the same answer): not learned
    assert not check_learned([0.69, 0.1], 2, subjects([0.9] * 4), CLASSES).learned


def test_thresholds_come_from_the_config_and_chance_follows_the_class_count():
    history, probs = [0.66, 0.65], subjects([0.2, 0.4, 0.5, 0.6])
    assert not check_learned(history, 2, probs, CLASSES).learned  # 0.65 > 0.9 ln 2 = 0.624
    lenient = LearnedCheckConfig(max_loss_fraction_of_chance=0.95, min_probability_spread=0.01)
    assert check_learned(history, 2, probs, CLASSES, lenient).learned  # 0.65 < 0.95 ln 2 = 0.658
    three = ("HC", "migraine", "APTH")
    frame = pd.DataFrame({"prob_HC": [0.4, 0.3, 0.3], "prob_migraine": [0.3, 0.3, 0.5], "prob_APTH": [0.3, 0.4, 0.2]})
    assert probability_spread(frame, three) == pytest.approx(0.2)  # the largest over the disease classes
    verdict = check_learned([0.9], 1, frame, three)  # 0.9 < 0.9 ln 3 = 0.989
    assert verdict.learned and verdict.chance_loss == pytest.approx(math.log(3))


def test_the_fold_flag_is_read_back_from_its_metrics_file(tmp_path):
    path = tmp_path / "metrics.tsv"
    pd.DataFrame({"split": ["test", "val"], "learned": [False, False]}).to_csv(path, sep="\t", index=False)
    assert read_fold_learned(path) is False
    pd.DataFrame({"split": ["test", "val"], "learned": [True, True]}).to_csv(path, sep="\t", index=False)
    assert read_fold_learned(path) is True
    pd.DataFrame({"split": ["test", "val"], "auc": [1.0, 1.0]}).to_csv(path, sep="\t", index=False)
    assert read_fold_learned(path) is None  # written before the check existed


# --- checkpoint selection --------------------------------------------------------------------------

def score(stopping: EarlyStopping, epoch: int, frame: pd.DataFrame) -> tuple[bool, float]:
    """Score one epoch's validation subjects as the training job does; returns (new best, raw AUC)."""
    auc = float(fold_metrics(frame, CLASSES, task="t", model="m", fold=1)["auc"].iloc[0])
    return stopping.update(epoch, auc, subject_loss(frame, CLASSES), probability_spread(frame, CLASSES)), auc


UNTRAINED = subjects(0.5 + 1e-5 * np.array([0, 1, 2, 3]))  # HC lowest: AUC 1.0 on a 3e-5 difference
LEARNED = subjects([0.1, 0.6, 0.9, 0.55])  # one HC above one migraine: AUC 0.75, loss 0.43


@pytest.mark.parametrize("rule", ["loss", "auc"])
def test_selection_does_not_keep_an_untrained_epoch_whose_auc_is_one_on_a_1e5_difference(rule):
    stopping = EarlyStopping(patience=10, rule=rule, min_epochs=1, auc_min_spread=0.01)
    epochs = [UNTRAINED, UNTRAINED, UNTRAINED, LEARNED]
    raw_auc = [score(stopping, epoch, frame)[1] for epoch, frame in enumerate(epochs, start=1)]
    assert raw_auc == [1.0, 1.0, 1.0, 0.75]
    assert stopping.best_epoch == 4
    # the old rule (highest raw AUC, then lowest loss) kept untrained epoch 1
    losses = [subject_loss(frame, CLASSES) for frame in epochs]
    assert max(range(4), key=lambda i: (raw_auc[i], -losses[i])) == 0


def test_the_auc_rule_still_selects_on_auc_when_probabilities_differ():
    stopping = EarlyStopping(patience=10, rule="auc", min_epochs=1, auc_min_spread=0.01)
    score(stopping, 1, LEARNED)  # AUC 0.75, loss 0.43
    assert score(stopping, 2, subjects([0.3, 0.35, 0.45, 0.4]))[0] is True  # AUC 1.0 from a real 0.15 spread, loss 0.59
    loss_rule = EarlyStopping(patience=10, rule="loss", min_epochs=1, auc_min_spread=0.01)
    score(loss_rule, 1, LEARNED)
    assert score(loss_rule, 2, subjects([0.3, 0.35, 0.45, 0.4]))[0] is False  # higher loss


def test_the_validation_loss_counts_participants_not_images():
    # sub-a (HC) has three sessions, sub-b (migraine) one: per image, sub-a's sessions would be three
    # quarters of the loss; per participant its sessions are averaged first and each participant is half
    images = subjects([0.1, 0.3, 0.2, 0.4], labels=(0, 0, 0, 1)).assign(subject=["sub-a"] * 3 + ["sub-b"])
    assert subject_loss(images, CLASSES) == pytest.approx(-(math.log(0.8) + math.log(0.4)) / 2)
    per_image = -(math.log(0.9) + math.log(0.7) + math.log(0.8) + math.log(0.4)) / 4
    assert subject_loss(images.drop(columns="subject"), CLASSES) == pytest.approx(per_image)


def test_loss_ties_are_broken_by_the_auc():
    stopping = EarlyStopping(patience=10, rule="loss", min_epochs=1, auc_min_spread=0.01)
    assert stopping.update(1, 0.5, 0.4, 0.5) and stopping.update(2, 0.75, 0.4, 0.5)
    assert not stopping.update(3, 0.75, 0.4, 0.005)  # same loss, but an AUC on a 0.005 spread does not count
    assert stopping.best_epoch == 2


def test_the_last_rule_keeps_the_latest_epoch_whatever_the_validation_subjects_say():
    stopping = EarlyStopping(patience=10, rule="last", min_epochs=1, auc_min_spread=0.01)
    score(stopping, 1, LEARNED)  # loss 0.43
    assert score(stopping, 2, subjects([0.6, 0.3, 0.2, 0.7]))[0] is True  # inverted and worse: still the latest
    assert stopping.best_epoch == 2 and not stopping.should_stop


def test_no_epoch_before_min_epochs_is_selected_or_counts_towards_patience():
    stopping = EarlyStopping(patience=2, rule="loss", min_epochs=3, auc_min_spread=0.01)
    assert not stopping.update(1, 1.0, 0.01, 0.9) and not stopping.update(2, 1.0, 0.01, 0.9)
    assert stopping.best_key is None and not stopping.should_stop and stopping.since_best == 0
    assert stopping.update(3, 0.5, 0.69, 0.001)  # the first eligible epoch is the best so far, however poor
    assert not stopping.update(4, 0.5, 0.7, 0.001) and not stopping.update(5, 0.5, 0.7, 0.001)
    assert stopping.best_epoch == 3 and stopping.should_stop


def test_selection_state_survives_the_resume_file():
    training = TrainingConfig(epochs=5, patience=3, selection="auc", min_epochs=2, auc_min_spread=0.02)
    stopping = EarlyStopping.for_training(training)
    assert (stopping.rule, stopping.min_epochs, stopping.auc_min_spread) == ("auc", 2, 0.02)
    saved = stopping.state()
    assert saved["best_key"] is None  # nothing eligible yet: still storable
    stopping.update(2, 0.8, 0.5, 0.3)
    stopping.update(3, 0.7, 0.5, 0.3)
    restored = EarlyStopping.for_training(training, stopping.state())
    assert restored == stopping


def test_selection_settings_are_checked():
    with pytest.raises(ConfigError, match="selection"):
        TrainingConfig(selection="accuracy")
    with pytest.raises(ConfigError, match="min_epochs"):
        TrainingConfig(epochs=3, min_epochs=4)
    from dataclasses import asdict

    nested = TrainingConfig(learned_check=LearnedCheckConfig(0.8, 0.05))
    assert TrainingConfig(**asdict(nested)) == nested  # through Snakemake params and back


def test_the_schema_fills_the_selection_and_check_defaults_and_rejects_bad_ones(tmp_path):
    import yaml
    from snakemake.exceptions import WorkflowError

    from headmri import config

    def load(**sections):
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump({"tasks": [{"name": "mig", "classes": ["HC", "migraine"]}], **sections}))
        return config.load(path)

    cfg = load(training={"learned_check": {"min_probability_spread": 0.05}})
    assert (cfg.training.selection, cfg.training.min_epochs, cfg.training.auc_min_spread) == ("loss", 1, 0.01)
    assert cfg.training.learned_check == LearnedCheckConfig(max_loss_fraction_of_chance=0.9, min_probability_spread=0.05)
    assert cfg.explain.exclude_unlearned is True
    for bad in ({"selection": "accuracy"}, {"min_epochs": 0}, {"learned_check": {"max_loss_fraction_of_chance": 1.5}},
                {"learned_check": {"spread": 0.1}}):
        with pytest.raises(WorkflowError):
            load(training=bad)
    with pytest.raises(ConfigError, match="min_epochs"):
        load(training={"epochs": 3, "min_epochs": 4})
    with pytest.raises(ConfigError, match="baseline.*min_epochs"):
        load(training={"epochs": 10, "min_epochs": 5}, baseline={"epochs": 3}, model={"baseline_resnet3d": True})
