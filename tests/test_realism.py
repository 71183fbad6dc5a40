"""bench/realism.py's distance: Wasserstein-1 over the real sample's IQR (0 = same, 1 = one IQR off)."""

import numpy as np
import pytest

from bench.realism import distance, spread


def test_identical_samples_are_at_distance_zero():
    real = np.random.default_rng(0).normal(10.0, 3.0, 500)
    d = distance(real, real.copy())
    assert d["wasserstein_over_spread"] == 0.0 and d["ks"] == 0.0


@pytest.mark.parametrize("shift", [1.0, -2.5])
def test_a_shift_by_k_iqr_is_at_distance_k(shift):
    real = np.random.default_rng(1).lognormal(3.0, 0.5, 400)
    iqr = np.subtract(*np.percentile(real, [75, 25]))
    d = distance(real, real + shift * iqr)
    assert d["spread_kind"] == "iqr"
    assert d["wasserstein_over_spread"] == pytest.approx(abs(shift), rel=1e-3)
    assert d["median_shift"] == pytest.approx(shift * iqr, rel=1e-3)
    assert d["ks"] > 0.3


def test_a_count_with_zero_iqr_is_scaled_by_its_standard_deviation():
    real = np.array([0] * 90 + [1] * 10, float)  # IQR 0, std 0.3
    scale, kind = spread(real)
    assert kind == "std" and scale == pytest.approx(0.3)
    assert distance(real, real + 1)["wasserstein_over_spread"] == pytest.approx(1 / 0.3, rel=1e-3)
    assert distance(real, []) is None
