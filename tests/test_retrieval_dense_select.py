"""The dense rule's top-cap selection and in-place log-probabilities equal the full lexsort they replaced (issue 27).

The reference functions are the code of ``dense._merge`` and ``dense._cold_logp`` before the selection (commit
b259d0c): every cold item of every user sorted by (-log-probability, item row).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from rqgmm.retrieval.dense import _cold_logp, _merge, _top_cold
from rqgmm.retrieval.metrics import MISS


def _reference_cold_logp(query, cold_unit, scale, share):
    logits = scale * (query @ cold_unit.T).astype(np.float64)
    if not logits.shape[1]:
        return logits
    top = logits.max(1, keepdims=True)
    return math.log(share) + logits - top - np.log(np.exp(logits - top).sum(1, keepdims=True))


def _reference_merge(items, warm, cold_logp, cold_rows, targets, cap):
    U = items.shape[0]
    calibrated = np.minimum.accumulate(warm, axis=1)
    take = min(cap, len(cold_rows))
    rank = np.full(U, MISS, dtype=np.int64)
    hit = items == targets[:, None]
    found = hit.any(1)
    j = hit.argmax(1)
    if not take:
        rank[found] = j[found] + 1
        return rank
    order = np.lexsort((np.broadcast_to(cold_rows, cold_logp.shape), -cold_logp), axis=1)[:, :take]
    chosen, chosen_logp = cold_rows[order], np.take_along_axis(cold_logp, order, 1)
    before = (chosen_logp[:, :, None] > calibrated[:, None, :]).sum(1)
    rank[found] = j[found] + 1 + before[found, j[found]]
    cold_hit = (chosen == targets[:, None]) & ~found[:, None]
    rows = np.flatnonzero(cold_hit.any(1))
    i = cold_hit[rows].argmax(1)
    ahead = (calibrated[rows] >= chosen_logp[rows, i][:, None]).sum(1)
    rank[rows] = i + 1 + ahead
    return rank


def _case(rng, U, C, W, M, levels):
    """Cold log-probabilities drawn from ``levels`` distinct values (few levels: many ties), warm lists, targets."""
    cold_rows = np.sort(rng.choice(M, C, replace=False))
    warm_items = np.setdiff1d(np.arange(M), cold_rows)
    values = np.sort(rng.normal(size=levels)) - 3.0
    cold_logp = values[rng.integers(0, levels, (U, C))]
    items = np.stack([rng.permutation(warm_items)[:W] for _ in range(U)])
    items[rng.random((U, W)) < 0.1] = -1
    warm = np.sort(rng.normal(size=(U, W)) - 3.0, axis=1)[:, ::-1].copy()
    warm = np.where(items >= 0, warm, -np.inf)
    # targets: some generated, some cold, some neither; some warm scores equal to a cold level (ties in the merge)
    warm[:, ::3] = values[rng.integers(0, levels, (U, (W + 2) // 3))]
    targets = np.where(rng.random(U) < 0.5, rng.choice(cold_rows, U), rng.integers(0, M, U))
    return items, warm, cold_logp, cold_rows, targets


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("levels", [1, 3, 50, 100000])
@pytest.mark.parametrize("cap", [0, 1, 2, 5])
def test_the_selection_equals_the_full_lexsort(seed, levels, cap):
    rng = np.random.default_rng([seed, levels, cap])
    C = int(rng.integers(1, 40))
    items, warm, cold_logp, cold_rows, targets = _case(rng, 30, C, 8, 100, levels)
    expected = _reference_merge(items, warm, cold_logp, cold_rows, targets, cap)
    assert np.array_equal(_merge(items, warm, cold_logp, cold_rows, targets, cap), expected)
    take = min(cap, C)
    order = np.lexsort((np.broadcast_to(cold_rows, cold_logp.shape), -cold_logp), axis=1)[:, :take]
    chosen, chosen_logp = _top_cold(cold_logp, cold_rows, take)
    assert np.array_equal(chosen, cold_rows[order])
    assert np.array_equal(chosen_logp, np.take_along_axis(cold_logp, order, 1))


@pytest.mark.parametrize("seed", range(3))
def test_the_in_place_log_probabilities_equal_the_formula_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    query = rng.normal(size=(7, 5)).astype(np.float32)
    cold_unit = rng.normal(size=(40, 5)).astype(np.float32)
    cold_unit[5] = cold_unit[9]  # equal cosines
    expected = _reference_cold_logp(query, cold_unit, 13.7, 0.23)
    assert np.array_equal(_cold_logp(query, cold_unit, 13.7, 0.23), expected)
    assert _cold_logp(query, cold_unit[:0], 13.7, 0.23).shape == (7, 0)
