"""Asymmetric multiple-instance training (training.objective: mil): what a step holds and what its loss asks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from headmri import config
from headmri.errors import ConfigError
from headmri.training.mil import MilBatchLoader, MilLoss


def _slices(tmp_path, counts):
    paths = []
    for i, n in enumerate(counts):
        path = tmp_path / f"s{i}.npy"
        np.save(path, np.full((n, 4, 4), i, dtype=np.uint8))  # each subject's slices hold its index
        paths.append(path)
    return paths


def _loader(tmp_path, epoch=0, seed=3):
    # subjects 0-2 controls (10, 12, 9 slices), 3-4 patients (20 and 5 slices: fewer than a bag)
    loader = MilBatchLoader(_slices(tmp_path, [10, 12, 9, 20, 5]), [0, 0, 0, 1, 1], controls_per_step=8, bags_per_step=2,
                            bag_slices=6, seed=seed, threads=1)
    loader.set_epoch(epoch)
    return loader


def test_each_step_holds_control_slices_then_one_bag_per_patient(tmp_path):
    loader = _loader(tmp_path)
    batches = list(loader)
    assert len(batches) == len(loader) == 4  # 31 control slices in steps of 8
    for x, y, subject in batches:
        assert x.shape == (8 + 2 * 6, 1, 4, 4)
        assert (y[:8] == 0).all() and (y[8:] == 1).all()
        stored = (x[:, 0, 0, 0] * 255).round().long()
        assert torch.equal(stored, subject)  # the slices are the named subjects'
        assert subject[8:14].unique().numel() == 1 and subject[14:].unique().numel() == 1
        assert subject[8] != subject[14]  # two different patients per step
    controls = torch.cat([b[2][:8] for b in batches])
    assert sorted(set(controls.tolist())) == [0, 1, 2]


def test_every_control_slice_is_seen_each_epoch_and_the_order_is_reproducible(tmp_path):
    def control_items(loader):
        subject, slice_ = loader._epoch_items(loader.epoch)
        steps = subject.reshape(len(loader), -1)[:, :8].ravel(), slice_.reshape(len(loader), -1)[:, :8].ravel()
        return set(zip(*(a.tolist() for a in steps)))

    assert control_items(_loader(tmp_path)) == {(s, i) for s, n in enumerate([10, 12, 9]) for i in range(n)}
    one, again, other = (_loader(tmp_path, epoch)._epoch_items(epoch) for epoch in (0, 0, 1))
    assert all(np.array_equal(a, b) for a, b in zip(one, again))
    assert not np.array_equal(one[1], other[1])


def test_the_loss_leaves_a_patients_unaffected_slices_alone_and_asks_every_control_slice():
    loss = MilLoss(controls=2, bags=1, bag_slices=8)  # the top half: 4 of a bag of 8
    y = torch.tensor([0, 0, 1, 1, 1, 1, 1, 1, 1, 1])
    subject = torch.tensor([0, 1, 2, 2, 2, 2, 2, 2, 2, 2])
    # the patient's 8 slices: 4 strongly diseased, 4 healthy-looking; the controls healthy
    log_odds = torch.tensor([-6.0, -6.0, 6.0, 6.0, 6.0, 6.0, -6.0, -6.0, -6.0, -6.0], requires_grad=True)
    logits = torch.stack([torch.zeros(10), log_odds], dim=1)
    value = loss(logits, y, subject)
    assert value < 0.01  # the top half of the patient's slices speaks for it
    value.backward()
    assert torch.all(log_odds.grad[6:] == 0)  # its other slices are not pulled towards the patient class
    # a control slice that looks diseased costs, however the patient's bag looks
    diseased_control = torch.stack([torch.zeros(10), log_odds.detach().clone().index_fill_(0, torch.tensor([0]), 6.0)], 1)
    assert loss(diseased_control, y, subject) > 1  # (6.0 / 2 control slices + 0 for the bag) / 2 parts


def test_the_loss_scores_each_bag_of_a_loader_step_by_its_top_half(tmp_path):
    loader = _loader(tmp_path)
    x, y, subject = next(iter(loader))
    torch.manual_seed(0)
    logits = torch.randn(x.shape[0], 2)
    log_odds = logits[:, 1] - logits[:, 0]
    bags = [log_odds[8:14], log_odds[14:]]  # the step's two patients, 6 slices each
    expected = (torch.nn.functional.softplus(log_odds[:8]).mean()
                + torch.stack([torch.nn.functional.softplus(-b.sort(descending=True).values[:3].mean()) for b in bags]).mean()) / 2
    assert MilLoss(controls=8, bags=2, bag_slices=6)(logits, y, subject) == pytest.approx(float(expected), rel=1e-6)
    with pytest.raises(ValueError, match="8 control slices and 2 bags of 6 slices"):
        MilLoss(controls=8, bags=2, bag_slices=6)(logits[:-1], y[:-1], subject[:-1])


def test_multiple_instance_training_applies_to_two_class_tasks_and_scores_them_top():
    raw = {"groups": ["HC", "migraine", "PPTH"],
           "tasks": [{"name": "migraine", "classes": ["HC", "migraine"]}, {"name": "three", "classes": ["HC", "migraine", "PPTH"]}],
           "demo": {"group_sizes": {"HC": 4, "migraine": 4, "PPTH": 4}}, "training": {"objective": "mil"}}
    cfg = config.from_mapping(raw)  # the paper's mean aggregation beside it: the three-class task keeps it
    two, three = cfg.task_training("migraine"), cfg.task_training("three")
    assert (two.objective, cfg.aggregation_for(two)) == ("mil", "top")
    assert (three.objective, cfg.aggregation_for(three)) == ("slices", "mean")
    assert three.batch_size == cfg.training.batch_size  # only the objective differs
    with pytest.raises(ConfigError, match=r"aggregation top scores two-class tasks; the task\(s\) \['three'\]"):
        config.from_mapping({**raw, "evaluation": {"aggregation": "top"}})
    with pytest.raises(ConfigError, match="training.objective must be one of"):
        config.from_mapping({**raw, "training": {"objective": "bags"}})


def test_top_scores_a_subject_by_its_most_diseased_half_of_slices():
    from headmri.evaluation.aggregate import aggregate_subjects

    # 8 slices each: the patient 4 at 0.95 and 4 at 0.02; the control 8 at 0.5
    patient_class = np.array([0.95] * 4 + [0.02] * 4 + [0.5] * 8)
    # the columns in the task's class order, reference class first, as the training job writes them
    slices = pd.DataFrame({"participant_id": ["p"] * 8 + ["c"] * 8, "split": "test", "prob_HC": 1 - patient_class,
                           "prob_migraine": patient_class})
    mean = aggregate_subjects(slices, "mean").set_index("participant_id")["prob_migraine"]
    top = aggregate_subjects(slices, "top").set_index("participant_id")
    assert mean["p"] < mean["c"]  # the mean over every slice ranks them the wrong way round
    assert top.loc["p", "prob_migraine"] == pytest.approx(0.95) and top.loc["c", "prob_migraine"] == pytest.approx(0.5)
    assert (top["prob_HC"] + top["prob_migraine"]).round(12).eq(1).all() and top.loc["p", "predicted"] == "migraine"
