"""headmri.slices.percentiles gives np.percentile's values bit for bit, whichever path it takes."""

import numpy as np
import pytest

from headmri.slices import percentiles as module
from headmri.slices.percentiles import linear_percentiles


def _samples(rng):
    n = 300_000  # large enough for the sampled bounds (>= 4 x the sample size)
    yield "normal", rng.normal(size=n).astype(np.float32)
    yield "few distinct values (ties at the wanted ranks)", rng.integers(0, 4, n).astype(np.float32)
    yield "sorted (a strided sample sees a trend)", np.sort(rng.exponential(size=n)).astype(np.float32)
    yield "integers", rng.integers(-1000, 1000, n).astype(np.int16)
    yield "small", rng.normal(size=7)
    yield "one value", np.array([3.5], dtype=np.float32)


@pytest.mark.parametrize("percentiles", [(0.5, 99.5), (0, 100), (2, 98.3), (50,), (0.001, 99.999), (30, 70)])
def test_equals_numpy_percentile_exactly(percentiles):
    for name, values in _samples(np.random.default_rng(0)):
        ours, numpy_ = linear_percentiles(values, percentiles), np.percentile(values, percentiles)
        assert ours.dtype == np.float64
        assert np.array_equal(ours, numpy_), name


def test_a_bound_that_falls_short_falls_back_to_the_whole_array(monkeypatch):
    """With no spread the sampled bound misses the wanted rank about half the time; the answer must not change."""
    monkeypatch.setattr(module, "_SPREAD", -3.0)
    rng = np.random.default_rng(1)
    fell_back = 0
    real_partition = np.partition

    def counting_partition(a, kth, *args, **kwargs):
        nonlocal fell_back
        fell_back += a.size == 400_000
        return real_partition(a, kth, *args, **kwargs)

    monkeypatch.setattr(module.np, "partition", counting_partition)
    for _ in range(5):
        values = rng.normal(size=400_000).astype(np.float32)
        assert np.array_equal(linear_percentiles(values, (0.5, 99.5)), np.percentile(values, (0.5, 99.5)))
    assert fell_back > 0, "the fallback path was never taken"


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="non-empty 1-D"):
        linear_percentiles(np.zeros((2, 2)), (50,))
    with pytest.raises(ValueError, match="non-empty 1-D"):
        linear_percentiles(np.zeros(0), (50,))
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        linear_percentiles(np.zeros(5), (-1, 50))
