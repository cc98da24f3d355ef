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


def _reference(codes: np.ndarray, X: np.ndarray) -> dict:
    """The metrics as np.unique over rows defines them (the implementation before keys and hashes)."""
    full, group, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    rows = np.ascontiguousarray(X).view(np.dtype((np.void, X.dtype.itemsize * X.shape[1]))).reshape(-1)
    vgroup = np.unique(rows, return_inverse=True)[1].reshape(-1)
    pairs = np.unique(np.stack([group.reshape(-1), vgroup], 1), axis=0)
    prefixes = [np.unique(codes[:, :l], axis=0, return_counts=True)[1] for l in range(1, codes.shape[1] + 1)]
    return dict(collided=float((counts[group.reshape(-1)] > 1).mean()), collision=1.0 - len(full) / len(codes),
                shared=float((np.bincount(vgroup)[vgroup] > 1).mean()),
                merged=float((np.bincount(pairs[:, 0])[group.reshape(-1)] > 1).mean()),
                gini=[metrics.gini_coefficient(c) for c in prefixes], largest=int(counts.max()))


@pytest.mark.parametrize("levels, k, dim, dtype", [(2, 5, 3, np.float32), (3, 40, 7, np.float64), (4, 3, 2, np.int16)])
def test_keyed_and_hashed_metrics_equal_the_row_unique_reference(levels, k, dim, dtype):
    rng = np.random.default_rng(levels)
    codes = rng.integers(0, k, (3000, levels))
    X = rng.normal(size=(3000, dim)).astype(dtype)
    X[::7], X[1::13] = X[0], X[5]  # exact duplicates, some under one ID, some not
    codes[::14] = codes[0]
    ref, out = _reference(codes, X), metrics.report(codes, [k] * levels)
    assert out["collided_items"] == ref["collided"] and out["collision_rate"] == ref["collision"]
    assert out["gini"] == ref["gini"] and out["largest_collision"] == ref["largest"]
    assert metrics.shared_vectors(X) == ref["shared"] and metrics.merged_items(codes, X) == ref["merged"]


def test_vector_groups_tell_rows_apart_byte_for_byte_even_when_their_hashes_collide(monkeypatch):
    X = np.random.default_rng(0).normal(size=(500, 5)).astype(np.float32)
    X[10] = X[20]
    monkeypatch.setattr(metrics, "_row_hashes", lambda X, chunk: np.arange(len(X)) % 3)  # every hash repeats
    groups = metrics.vector_groups(X)
    assert groups[10] == groups[20] and len(np.unique(groups)) == 499


def test_prefix_counts_fall_back_on_rows_when_keys_would_overflow():
    codes = np.array([[2**40, 1, 2**30], [2**40, 1, 2**30], [0, 1, 2]])
    assert [c.tolist() for c in metrics.prefix_counts(codes)] == [[1, 2], [1, 2], [1, 2]]
    assert metrics.collided_items(codes) == pytest.approx(2 / 3)


def test_chunked_squared_errors_equal_the_whole_array_ones():
    rng = np.random.default_rng(3)
    X, X_hat = rng.normal(size=(50, 4)), rng.normal(size=(50, 4))
    err, tot = metrics._squared_errors(X, X_hat, chunk=7)
    assert err == pytest.approx(((X - X_hat) ** 2).sum()) and tot == pytest.approx(((X - X.mean(0)) ** 2).sum())
    by_depth = metrics.squared_errors_by_depth(X, lambda rows, d: X_hat[rows] * d, [1, 2], chunk=7)
    assert by_depth[2] == pytest.approx(((X - 2 * X_hat) ** 2).sum())


@pytest.mark.parametrize("make", [
    lambda rng: rng.integers(0, 256, (3000, 3)),
    lambda rng: rng.integers(0, 5, (400, 4)).astype(np.int16),
    lambda rng: rng.integers(-3, 4, (300, 2)),  # negative codes: the row-wise unique
    lambda rng: rng.integers(0, 2**40, (200, 3)),  # keys beyond an int64: the row-wise unique
    lambda rng: np.zeros((0, 3), np.int64),
])
def test_prefix_groups_number_prefixes_as_numpys_row_unique_does(make):
    codes = make(np.random.default_rng(0))
    kept = codes.copy()
    every = metrics.prefix_groups(codes)
    assert len(every) == codes.shape[1]
    for level in range(1, codes.shape[1] + 1):
        expected = np.unique(codes[:, :level], axis=0, return_inverse=True)[1].reshape(-1)
        got = metrics.prefix_groups(codes, [level])[0]
        assert got.dtype == np.int64 and np.array_equal(got, expected)
        assert np.array_equal(every[level - 1], expected)
    assert np.array_equal(codes, kept)
