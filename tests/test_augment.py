"""Training-batch augmentation (training.augment): small per-slice moves that keep a regional effect in place."""

from __future__ import annotations

import math

import pytest
import torch

from headmri.config import AUGMENTATIONS, TrainingConfig
from headmri.errors import ConfigError
from headmri.training.augment import AUGMENTS, AffineJitter, IntensityJitter, RandomErase, make_augment


def block_batch(n: int = 16, size: int = 64) -> torch.Tensor:
    """Grey slices with one bright 8 x 8 block at a known place (rows 20-27, columns 36-43)."""
    x = torch.zeros(n, 1, size, size)
    x[:, :, 20:28, 36:44] = 1.0
    return x


def centre(x: torch.Tensor) -> torch.Tensor:
    """Intensity-weighted centre (row, column) of each slice, (B, 2)."""
    rows = torch.arange(x.shape[-2], dtype=x.dtype)[:, None]
    cols = torch.arange(x.shape[-1], dtype=x.dtype)[None, :]
    mass = x.sum(dim=(1, 2, 3))
    return torch.stack([(x * rows).sum(dim=(1, 2, 3)) / mass, (x * cols).sum(dim=(1, 2, 3)) / mass], 1)


def test_each_slice_moves_by_its_own_small_amount_and_the_block_stays_near_its_place():
    torch.manual_seed(0)
    x = block_batch()
    jitter = AffineJitter()
    out = jitter(x)
    assert out.shape == x.shape and not torch.equal(out, x)
    moved = (centre(out) - centre(x)).norm(dim=1)
    assert moved.std() > 0.1  # every slice its own draw
    # bound: the shift (6 % of 64 px each way) plus rotation and scaling of a point 16 px from the centre
    size, offset = 64, math.hypot(23.5 - 31.5, 39.5 - 31.5)
    bound = math.hypot(2 * jitter.shift * size / 2, 2 * jitter.shift * size / 2) + offset * (math.radians(jitter.rotate_deg) + jitter.scale)
    assert moved.max() < bound and moved.max() > 1.0
    assert out.sum(dim=(1, 2, 3)).min() > 0.8 * 64  # the block is moved, not cut away


def test_the_same_seed_gives_the_same_batch():
    x = block_batch()
    torch.manual_seed(3)
    first = AffineJitter()(x)
    torch.manual_seed(3)
    assert torch.equal(AffineJitter()(x), first)


def test_none_means_no_augmentation_and_unknown_names_are_refused():
    assert make_augment("none") is None and isinstance(make_augment("affine"), AffineJitter)
    with pytest.raises(ConfigError, match="training.augment.*none.*affine"):
        TrainingConfig(augment="elastic")


def test_erase_blanks_one_square_in_about_half_the_slices_and_leaves_the_rest_untouched():
    torch.manual_seed(0)
    x = torch.rand(400, 1, 64, 64) + 0.5  # no zeros before
    before = x.clone()
    out = RandomErase(size=0.25, p=0.5)(x)
    zeros = (out == 0).sum(dim=(1, 2, 3))
    side = 16
    assert set(zeros.tolist()) == {0, side * side}  # one whole square or nothing
    assert 150 < int((zeros > 0).sum()) < 250
    changed = out != x
    assert torch.equal(out[~changed], x[~changed]) and torch.equal(x, before)  # the input is not modified
    one = int(torch.nonzero(zeros)[0])
    rows, cols = torch.nonzero(out[one, 0] == 0, as_tuple=True)
    assert int(rows.max() - rows.min()) == int(cols.max() - cols.min()) == side - 1  # a square
    assert isinstance(make_augment("erase"), RandomErase)

    assert tuple(AUGMENTS) == AUGMENTATIONS  # what the config accepts is what the module builds


def test_intensity_jitter_changes_each_slice_smoothly_and_keeps_background_and_a_regions_local_contrast():
    torch.manual_seed(0)
    x = torch.zeros(16, 1, 64, 64)
    x[:, :, 8:56, 8:56] = 0.6  # a brain
    x[:, :, 28:36, 28:36] = 0.45  # a region 25 % darker than its surroundings
    out = IntensityJitter()(x)
    assert out.shape == x.shape and torch.equal(out[:, :, :8], x[:, :, :8])  # background stays 0
    brain_means = out[:, :, 8:56, 8:56].mean(dim=(1, 2, 3))
    assert brain_means.std() > 0.01  # every slice its own draw
    ratio = out / x.clamp(min=1e-6)
    # smooth: neighbouring brain pixels of one intensity change by nearly the same factor (outside the region)
    assert (ratio[:, :, 10:26, 11:54] - ratio[:, :, 10:26, 10:53]).abs().max() < 0.05
    # the region stays darker than the ring around it in every slice
    region = out[:, :, 28:36, 28:36].mean(dim=(1, 2, 3))
    ring = (out[:, :, 24:40, 24:40].sum(dim=(1, 2, 3)) - out[:, :, 28:36, 28:36].sum(dim=(1, 2, 3))) / (256 - 64)
    assert (region < 0.9 * ring).all()
    torch.manual_seed(0)
    assert torch.equal(IntensityJitter()(x), out)  # the seed decides it
    assert isinstance(make_augment("intensity"), IntensityJitter)
