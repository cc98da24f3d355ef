"""LIGER's dense cold-item rule (issue 27, item 2b): the merge on a hand-made case, and a cold item retrieved."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from rqgmm.retrieval.dense import dense_rule_ranks, unit_rows
from rqgmm.retrieval.metrics import MISS
from rqgmm.retrieval.model import ModelConfig
from rqgmm.retrieval.sequences import build_sequences
from rqgmm.retrieval.train import QUICK, fit_retriever, histories
from rqgmm.retrieval.vocab import ItemTokens


def _reference(beam: list[int], cos: dict[int, float], cold: list[int], cap: int) -> list[int]:
    """The merged list, one insertion at a time (the module docstring's rule, written plainly)."""
    calibrated, low = [], np.inf
    for item in beam:
        low = min(low, cos[item])
        calibrated.append(low)
    chosen = sorted(cold, key=lambda c: (-cos[c], c))[:cap]
    merged, i = [], 0
    for item, score in zip(beam, calibrated):
        while i < len(chosen) and cos[chosen[i]] > score:
            merged.append(chosen[i])
            i += 1
        merged.append(item)
    return merged + chosen[i:]


def test_the_worked_case_and_a_plain_reference():
    # items a, b, c, x, y, z = rows 0..5; unit vectors in 2-d at the cosines of the docstring's case
    cos = {0: 0.9, 1: 0.5, 2: 0.7, 3: 0.6, 4: 0.95, 5: 0.1}
    unit = np.array([[c, np.sqrt(1 - c * c)] for c in cos.values()], dtype=np.float32)
    cold = np.array([False] * 3 + [True] * 3)
    query = np.array([[1.0, 0.0]], dtype=np.float32)
    expected = _reference([0, 1, 2], cos, [3, 4, 5], 2)
    assert expected == [4, 0, 3, 1, 2]
    for target in range(6):
        rank = dense_rule_ranks(np.array([[0, 1, 2]]), query, unit, cold, np.array([target]), 2)[0]
        assert rank == (expected.index(target) + 1 if target in expected else MISS)
    items, targets = np.array([[0, 1, 2]] * 6), np.arange(6)
    none = dense_rule_ranks(items, np.repeat(query, 6, 0), unit, cold, targets, 0)  # cap 0: the beam alone
    assert none.tolist() == [1, 2, 3, MISS, MISS, MISS]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_lists_match_the_reference(seed):
    rng = np.random.default_rng(seed)
    M, W = 30, 6
    unit = unit_rows(rng.standard_normal((M, 4)))
    cold = rng.random(M) < 0.4
    warm_rows = np.flatnonzero(~cold)
    query = unit_rows(rng.standard_normal((5, 4)))
    for u in range(5):
        beam = rng.permutation(warm_rows)[:W].tolist()
        cos = dict(enumerate((unit @ query[u]).tolist()))
        merged = _reference(beam, cos, np.flatnonzero(cold).tolist(), 3)
        ranks = dense_rule_ranks(np.array([beam] * M), np.repeat(query[u:u + 1], M, 0), unit, cold, np.arange(M), 3)
        assert ranks.tolist() == [merged.index(t) + 1 if t in merged else MISS for t in range(M)]


def test_the_dense_rule_retrieves_a_cold_item_whose_embedding_equals_a_seen_items():
    """Item i is followed by i + 1 (12 warm items); cold item 12 has item 5's embedding and is the test target
    after ... 3, 4: the dense rule puts it in the top 10, while no training sequence holds it."""
    warm = [np.arange(s, s + 6) % 12 for s in range(12)] * 3
    cold_users = [np.array([0, 1, 2, 3, 4, 12])] * 4
    sequences = warm + cold_users
    items = np.concatenate(sequences)
    users = np.repeat(np.arange(len(sequences)), 6)
    seqs = build_sequences(users, items, np.ones(len(items)), None, 13)
    vectors = np.random.default_rng(0).standard_normal((13, 8)).astype(np.float32)
    vectors[12] = vectors[5]
    codes = np.column_stack([np.arange(13) // 4, np.arange(13) % 4])
    config = replace(QUICK, model=ModelConfig(dim=32, layers=1, heads=2), max_epochs=40, patience=40, lr=1e-2,
                     cold="dense")
    retriever = fit_retriever(seqs, ItemTokens.semantic(codes, [4, 4]), config, embeddings=vectors)
    assert retriever.cold[12] and not retriever.cold[:12].any()
    by_rule, _ = retriever.rule_ranks(histories(seqs, "test", retriever.length), seqs.test)
    target_cold = seqs.test == 12
    assert target_cold.sum() == 4
    assert (by_rule["dense"][target_cold] <= 10).all()
    assert (by_rule["dense"][~target_cold] <= 10).mean() >= 0.9  # warm targets keep their places


def test_dense_needs_embeddings_and_generated_dedup_tokens():
    seqs = build_sequences(np.repeat(np.arange(4), 4), np.arange(16) % 6, np.ones(16), None, 6)
    codes = np.column_stack([np.arange(6) // 3, np.arange(6) % 3])
    with pytest.raises(ValueError, match="Expected cold in"):
        fit_retriever(seqs, ItemTokens.semantic(codes, [2, 3]), replace(QUICK, cold="dense"))
