"""Metrics against values computed by hand on small code tables."""

import math

import numpy as np
import pytest

from rqgmm.ids import metrics
from rqgmm.ids.codes import flatten_codes, level_offsets
from rqgmm.ids.suffix import unique_suffix

# 6 items, 2 levels, K = (4, 3). Full IDs: (0,1) x3, (2,0) x2, (1,1) x1.
CODES = np.array([[0, 1], [0, 1], [2, 0], [0, 1], [2, 0], [1, 1]])
K = [4, 3]


def test_utilization():
    assert metrics.utilization(CODES, K) == [3 / 4, 2 / 3]


def test_prefix_utilization():
    # level 1: 3 prefixes / min(6, 4); level 2: 3 full IDs / min(6, 12)
    assert metrics.prefix_utilization(CODES, K) == [3 / 4, 3 / 6]


def test_collisions_and_icr():
    assert metrics.collision_rate(CODES) == pytest.approx(1 - 3 / 6)
    assert metrics.icr(CODES) == pytest.approx(1 / 3)


def test_gini():
    # counts over level-1 prefixes: {0: 3, 2: 2, 1: 1} -> sorted 1, 2, 3
    g = (2 * (1 * 1 + 2 * 2 + 3 * 3)) / (3 * 6) - 4 / 3
    assert metrics.gini(CODES) == pytest.approx([g, g])
    assert metrics.gini_coefficient(np.array([5, 5, 5])) == pytest.approx(0.0)
    assert metrics.gini_coefficient(np.array([0, 0, 0, 12])) == pytest.approx(0.75)


def test_perplexity():
    p1 = np.array([3, 2, 1]) / 6
    p2 = np.array([4, 2]) / 6
    expected = [math.exp(-(p * np.log(p)).sum()) for p in (p1, p2)]
    assert metrics.perplexity(CODES) == pytest.approx(expected)
    assert metrics.perplexity(np.zeros((5, 1), dtype=int)) == [1.0]


def test_rmse_and_relative_mse():
    X = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]])
    X_hat = np.array([[0.0, 1.0], [2.0, 0.0], [3.0, 4.0]])
    assert metrics.rmse(X, X_hat) == pytest.approx(math.sqrt((1 + 0 + 9) / 3))
    total = ((X - X.mean(0)) ** 2).sum()
    assert metrics.relative_mse(X, X_hat) == pytest.approx(10 / total)


def test_report_keys_exactly():
    out = metrics.report(CODES, K)
    assert tuple(out) == metrics.REPORT_KEYS
    assert out["rmse"] is None and out["n_items"] == 6 and out["levels"] == 2 and out["codebook_size"] == K


def test_unique_suffix():
    np.testing.assert_array_equal(unique_suffix(CODES), [0, 1, 0, 2, 1, 0])
    full = np.column_stack([CODES, unique_suffix(CODES)])
    assert len(np.unique(full, axis=0)) == len(CODES)


def test_level_offsets_and_tokens():
    np.testing.assert_array_equal(level_offsets([4, 3, 5]), [0, 4, 7])
    np.testing.assert_array_equal(flatten_codes(CODES, K)[2], [2, 4])


def test_total_squares_chunked_equals_numpy():
    """Σ|x − mean|² over more rows than one chunk (the mean itself summed by chunks) equals numpy's in float64."""
    from rqgmm.ids.metrics import total_squares
    X = np.random.default_rng(0).normal(2.0, 1.0, size=(1000, 5)).astype(np.float32)
    x = X.astype(np.float64)
    assert total_squares(X, chunk=128) == pytest.approx(float(((x - x.mean(0)) ** 2).sum()), rel=1e-12)
