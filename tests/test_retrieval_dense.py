"""LIGER's dense cold-item rule (issue 27, item 2b): the merge on a hand-made case, and a cold item retrieved."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from rqgmm.retrieval.baselines import unit_rows
from rqgmm.retrieval.dense import dense_rule_ranks
from rqgmm.retrieval.metrics import MISS
from rqgmm.retrieval.model import ModelConfig
from rqgmm.retrieval.sequences import build_sequences
from rqgmm.retrieval.train import QUICK, fit_retriever, histories
from rqgmm.retrieval.vocab import ItemTokens


def _reference(beam: list[int], warm: list[float], cold_score: dict[int, float], cap: int) -> list[int]:
    """The merged list, one insertion at a time (the module docstring's rule, written plainly)."""
    calibrated, low = [], np.inf
    for score in warm:
        low = min(low, score)
        calibrated.append(low)
    chosen = sorted(cold_score, key=lambda c: (-cold_score[c], c))[:cap]
    merged, i = [], 0
    for item, score in zip(beam, calibrated):
        while i < len(chosen) and cold_score[chosen[i]] > score:
            merged.append(chosen[i])
            i += 1
        merged.append(item)
    return merged + chosen[i:]


def _cold_scores(query: np.ndarray, unit: np.ndarray, cold: np.ndarray, scale: float, share: float) -> dict:
    """log pi + log softmax over the cold items of the scaled cosines, item by item."""
    rows = np.flatnonzero(cold).tolist()
    logits = {c: scale * float(unit[c] @ query) for c in rows}
    norm = np.log(sum(np.exp(v) for v in logits.values()))
    return {c: np.log(share) + v - norm for c, v in logits.items()}


def test_the_docstring_case():
    warm, cold_score = [-1.0, -2.0, -3.0], {3: -2.5, 4: -0.5, 5: -9.0}
    assert _reference([0, 1, 2], warm, cold_score, 2) == [4, 0, 1, 3, 2]


def test_a_hand_made_case_matches_the_reference():
    # items a, b, c, x, y, z = rows 0..5; the cold items x, y, z at cosines 0.3, 0.9, -0.8 to the query
    cos = np.array([0.3, 0.9, -0.8])
    unit = np.zeros((6, 2), dtype=np.float32)
    unit[3:] = np.column_stack([cos, np.sqrt(1 - cos * cos)])
    query = np.array([[1.0, 0.0]], dtype=np.float32)
    logp, scale, share = np.array([[-1.0, -2.0, -3.0]]), 5.0, 0.2
    cold = np.array([False] * 3 + [True] * 3)
    scores = _cold_scores(query[0], unit, cold, scale, share)
    logits = scale * cos
    assert np.allclose([scores[3], scores[4], scores[5]], np.log(share) + logits - np.log(np.exp(logits).sum()))
    expected = _reference([0, 1, 2], (np.log1p(-share) + logp[0]).tolist(), scores, 2)
    assert expected == [0, 4, 1, 2, 3]  # y (-1.66) after a (-1.22), x (-4.66) after c (-3.22)
    for target in range(6):
        rank = dense_rule_ranks(np.array([[0, 1, 2]]), logp, query, unit, cold, np.array([target]), 2, scale, share)
        assert rank[0] == (expected.index(target) + 1 if target in expected else MISS)
    items, targets = np.array([[0, 1, 2]] * 6), np.arange(6)
    none = dense_rule_ranks(items, np.repeat(logp, 6, 0), np.repeat(query, 6, 0), unit, cold, targets, 0, scale,
                            share)
    assert none.tolist() == [1, 2, 3, MISS, MISS, MISS]  # cap 0: the beam alone


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_lists_match_the_reference(seed):
    rng = np.random.default_rng(seed)
    M, W, scale, share = 30, 6, 7.0, 0.05
    unit = unit_rows(rng.standard_normal((M, 4)))
    cold = rng.random(M) < 0.4
    warm_rows = np.flatnonzero(~cold)
    query = unit_rows(rng.standard_normal((5, 4)))
    for u in range(5):
        beam = rng.permutation(warm_rows)[:W].tolist()
        logp = np.sort(rng.uniform(-8, -1, W))[::-1]
        warm = (np.log1p(-share) + logp).tolist()
        merged = _reference(beam, warm, _cold_scores(query[u], unit, cold, scale, share), 3)
        ranks = dense_rule_ranks(np.array([beam] * M), np.repeat(logp[None], M, 0), np.repeat(query[u:u + 1], M, 0),
                                 unit, cold, np.arange(M), 3, scale, share)
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
