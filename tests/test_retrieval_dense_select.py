"""The dense rule's top-cap selection and in-place log-probabilities equal the full lexsort they replaced (issue 27).

The reference functions are the code of ``dense._merge`` and ``dense._cold_logp`` before the selection (commit
b259d0c): every cold item of every user sorted by (-log-probability, item row).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import torch

from rqgmm.retrieval import dense
from rqgmm.retrieval.dense import _logp_of, _merge, _top_cold, _top_cold_torch, dense_rule_ranks
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
    take = min(cap, C)
    assert np.array_equal(_merge(items, warm, *_top_cold(cold_logp, cold_rows, take), targets), expected)
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
    assert np.array_equal(_logp_of(query @ cold_unit.T, 13.7, 0.23), expected)
    assert _logp_of(query @ cold_unit[:0].T, 13.7, 0.23).shape == (7, 0)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("cap", [0, 1, 2, 3, 7])
@pytest.mark.parametrize("scale", [7.5, 1e-17])
def test_the_host_blocks_select_what_the_whole_log_probabilities_select(seed, cap, scale, monkeypatch):
    """The host path (blocks of users, only each row's best logits scored) picks the same cold items with the same
    bits as every log-probability of :func:`_logp_of` and the partition: with exact ties (duplicated
    embeddings, at and below the threshold), a row of NaN, and (a tiny scale) distinct logits whose
    log-probabilities round to one value, so that the order falls to the item rows."""
    monkeypatch.setattr(dense, "ROW_BLOCK", 4)
    rng = np.random.default_rng([seed, cap])
    C = int(rng.integers(1, 30))
    query = rng.normal(size=(11, 4)).astype(np.float32)
    cold_unit = rng.normal(size=(C, 4)).astype(np.float32)
    cold_unit[rng.integers(0, C, C // 2)] = cold_unit[rng.integers(0, C)]  # many cold items share one cosine
    query[3] = np.nan
    cold_rows = np.sort(rng.choice(1000, C, replace=False))
    take = min(cap, C)
    expected = _top_cold(_logp_of(query @ cold_unit.T, scale, 0.1), cold_rows, take)
    got = dense._top_cold_host(query @ cold_unit.T, cold_rows, scale, 0.1, take)
    assert all(np.array_equal(g, e, equal_nan=True) for g, e in zip(got, expected))


def test_the_highest_entries_leave_the_values_unchanged():
    values = np.array([[1.0, 5.0, 5.0, -np.inf], [-np.inf, -np.inf, 2.0, -np.inf]])
    before = values.copy()
    best, column = dense._highest(values, 3)
    assert np.array_equal(values, before)
    assert best[0].tolist() == [5.0, 5.0, 1.0] and sorted(column[0, :2].tolist()) == [1, 2] and column[0, 2] == 0
    assert best[1, 0] == 2.0 and column[1, 0] == 2 and np.isneginf(best[1, 1:]).all()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("cap", [0, 1, 2, 7])
def test_the_torch_selection_equals_the_numpy_one(seed, cap):
    """The device path (run here on the CPU) picks the same cold items; duplicated embeddings give exact ties."""
    rng = np.random.default_rng([seed, cap])
    C = int(rng.integers(1, 30))
    query = rng.normal(size=(9, 4)).astype(np.float32)
    cold_unit = rng.normal(size=(C, 4)).astype(np.float32)
    cold_unit[rng.integers(0, C, C // 2)] = cold_unit[0]  # many cold items tie with item 0
    cold_rows = np.sort(rng.choice(1000, C, replace=False))
    take = min(cap, C)
    chosen, chosen_logp = _top_cold(_logp_of(query @ cold_unit.T, 7.5, 0.1), cold_rows, take)
    got, got_logp = _top_cold_torch(torch.from_numpy(query), torch.from_numpy(cold_unit), cold_rows, 7.5, 0.1, take)
    assert np.array_equal(got, chosen)
    assert np.allclose(got_logp, chosen_logp, rtol=0, atol=1e-5)  # float32 products of two libraries


def test_dense_rule_ranks_on_a_torch_device_equal_the_host_ones(monkeypatch):
    rng = np.random.default_rng(5)
    M, U, W = 300, 700, 6  # more users than one host chunk
    unit = rng.normal(size=(M, 8)).astype(np.float32)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    cold = rng.random(M) < 0.3
    items = np.stack([rng.choice(np.flatnonzero(~cold), W, replace=False) for _ in range(U)])
    logp = np.sort(rng.normal(size=(U, W)) - 2, axis=1)[:, ::-1].copy()
    targets = np.where(rng.random(U) < 0.5, rng.choice(np.flatnonzero(cold), U), items[:, 0])
    query = unit[targets] + 0.1 * rng.normal(size=(U, 8)).astype(np.float32)  # cold targets near their query
    args = items, logp, query, unit, cold, targets, 3, 12.0, 0.3
    host = dense_rule_ranks(*args)
    assert (host[cold[targets]] <= W + 3).mean() > 0.5
    monkeypatch.setattr(dense, "HOST_TYPES", ())  # the device path, on the CPU
    monkeypatch.setattr(dense, "DEVICE_MIN_COLD", 1)
    monkeypatch.setattr(dense, "DEVICE_BLOCK_BYTES", 8 * int(cold.sum()) * 250)  # 250 users a block
    assert np.array_equal(dense_rule_ranks(*args, device="cpu"), host)


def test_fewer_cold_items_than_the_device_minimum_stay_on_the_host(monkeypatch):
    """A MovieLens-100k-sized catalogue (1,682 items) is scored in numpy on any device: its ranks stay bit for bit."""
    assert 1682 < dense.DEVICE_MIN_COLD
    monkeypatch.setattr(dense, "HOST_TYPES", ())  # as on a GPU

    def refuse(*args):
        raise AssertionError("the device path ran")

    monkeypatch.setattr(dense, "_top_cold_torch", refuse)
    rng = np.random.default_rng(0)
    unit = rng.normal(size=(1682, 4)).astype(np.float32)
    cold = np.zeros(1682, bool)
    cold[-300:] = True
    items = np.tile(np.arange(5), (3, 1))
    ranks = dense_rule_ranks(items, np.log(np.full((3, 5), 0.1)), unit[:3], unit, cold, np.array([0, 1, 1500]), 2,
                             10.0, 0.2, device="cpu")
    assert ranks[0] <= 3 and ranks[1] <= 4
