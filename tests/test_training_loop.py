"""The training step near the device's limit (issue 17): no host-device wait per step, the same numbers."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from headmri.training import loop


def _batches(n: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(5, 3, generator=generator), torch.randint(0, 2, (5,), generator=generator)) for _ in range(n)]


def _setup(optimizer=torch.optim.AdamW):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = optimizer(model.parameters(), lr=0.05)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return model, optimizer, scheduler


def test_epoch_loss_is_the_per_item_mean_to_the_bit(one_thread):
    model, optimizer, scheduler = _setup()
    mean = loop.train_epoch(model, _batches(6), optimizer, scheduler, device=torch.device("cpu"), grad_clip=1.0,
                            progress=False)
    # the previous loop's arithmetic: a Python float sum of float(loss) * batch size, one step at a time
    model, optimizer, scheduler = _setup()
    total = 0.0
    for x, y in _batches(6):
        loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        total += float(loss.detach()) * y.numel()
    assert mean == total / 30


def test_an_epoch_reads_the_loss_off_the_device_once(monkeypatch, one_thread):
    reads = []
    original_float, original_item = torch.Tensor.__float__, torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "__float__", lambda self: reads.append("float") or original_float(self))
    monkeypatch.setattr(torch.Tensor, "item", lambda self: reads.append("item") or original_item(self))
    # SGD: AdamW's CPU path reads its own step counter (a host tensor; on a GPU fused AdamW keeps it there)
    model, optimizer, scheduler = _setup(torch.optim.SGD)
    loop.train_epoch(model, _batches(8), optimizer, scheduler, device=torch.device("cpu"), grad_clip=1.0,
                     progress=True)  # a fast epoch in a log file: no progress line, so no read either
    assert reads == ["float"]


def test_a_compiled_model_keeps_its_state_dict_keys_and_logs_its_first_step(caplog, one_thread):
    import logging

    model, optimizer, scheduler = _setup()
    keys = list(model.state_dict())
    x = torch.randn(4, 3)
    expected = model(x)
    # the "eager" backend: dynamo's capture without inductor's C++ compilation (the config's path uses
    # the default backend; which one does not change what the loop does with the model)
    compiled = loop.compile_model(model, backend="eager")
    assert compiled is model and list(model.state_dict()) == keys
    assert model._compiled_call_impl is not None  # what nn.Module.compile sets: calls now go through dynamo
    assert torch.equal(model(x), expected)
    with caplog.at_level(logging.INFO, logger="headmri.training.loop"):
        loop.train_epoch(model, _batches(3), optimizer, scheduler, device=torch.device("cpu"), grad_clip=None,
                         progress=False, first_step_note="includes torch.compile's compilation")
    first = [r.getMessage() for r in caplog.records if "first training step" in r.getMessage()]
    assert len(first) == 1 and first[0].endswith("(includes torch.compile's compilation)")


def test_prediction_moves_the_probabilities_off_the_device_once(monkeypatch, one_thread):
    batches = [(x, y, torch.arange(5), torch.arange(5)) for x, y in _batches(4)]
    model, _, _ = _setup()
    expected = np.concatenate([torch.softmax(model(x), dim=1).detach().numpy() for x, *_ in batches])
    moved = []
    original = torch.Tensor.cpu
    monkeypatch.setattr(torch.Tensor, "cpu", lambda self, *a, **k: moved.append(self.is_floating_point())
                        or original(self, *a, **k))
    found = loop.predict(model, batches, device=torch.device("cpu"), progress=False)
    assert moved.count(True) == 1  # the probabilities, once; the index tensors are the loader's host tensors
    assert found.probabilities.dtype == np.float64 and np.array_equal(found.probabilities, expected.astype(np.float64))
    assert found.subject_index.tolist() == list(range(5)) * 4
