"""Issue 27: the prefix rule at a chosen depth, cold items ordered by content affinity and placed by a log weight,
against a plain reference."""

from __future__ import annotations

import numpy as np
import pytest

from rqgmm.retrieval.cold import calibrated_weight, choose_depth, placed_ranks, prefix_rule_ranks
from rqgmm.retrieval.metrics import MISS


def _reference(beam: list[int], prefix: np.ndarray, cold: np.ndarray, close: np.ndarray, cap: int,
               logp: list[float] | None = None, weight: float = 0.0) -> list[int]:
    """The rule as written in cold.py's docstring, one list at a time: candidates by (slot, -affinity, row), each
    entering after the warm items scoring at least its prefix's first item's score plus ``weight``."""
    slot = {}
    for j, item in enumerate(beam):
        slot.setdefault(prefix[item], j)
    candidates = sorted((slot[prefix[c]], -close[c], c) for c in np.flatnonzero(cold) if prefix[c] in slot)[:cap]
    logp = logp if logp is not None else [-float(j) for j in range(len(beam))]
    out = list(beam)
    for s, _, c in reversed(candidates):
        ahead = max(s + 1, sum(v >= logp[s] + weight for v in logp))
        out.insert(ahead, c)
    return out


def test_the_docstring_case_with_affinity():
    """Warm a, b, c (p, q, p); cold x, y (p), z (q); cap 2: a, x, y, b, c; affinities x 0.1, y 0.9: a, y, x, b, c."""
    prefix, cold = np.array([7, 9, 7, 7, 7, 9]), np.array([0, 0, 0, 1, 1, 1], dtype=bool)
    items, targets = np.array([[0, 1, 2]] * 6), np.arange(6)
    assert prefix_rule_ranks(items, prefix, cold, targets, 2).tolist() == [1, 4, 5, 2, 3, MISS]
    unit = np.array([[1.0, 0], [1, 0], [1, 0], [0.1, 0], [0.9, 0], [0.5, 0]])
    query = np.repeat([[1.0, 0.0]], 6, 0)
    assert prefix_rule_ranks(items, prefix, cold, targets, 2, query, unit).tolist() == [1, 4, 5, 3, 2, MISS]
    assert prefix_rule_ranks(items, prefix, cold, targets, 1, query, unit).tolist() == [1, 3, 4, MISS, 2, MISS]
    assert prefix_rule_ranks(items, prefix, cold, targets, 3, query, unit).tolist() == [1, 4, 6, 3, 2, 5]
    logp = np.repeat([[-1.0, -2.0, -3.0]], 6, 0)  # w -1.5: x and y score -2.5, after b: a, b, y, x, c
    assert prefix_rule_ranks(items, prefix, cold, targets, 2, query, unit, logp, -1.5).tolist() == [1, 2, 5, 4, 3,
                                                                                                    MISS]
    assert prefix_rule_ranks(items, prefix, cold, targets, 2, query, unit, logp, 0.0).tolist() == [1, 4, 5, 3, 2,
                                                                                                   MISS]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_lists_match_the_reference(seed):
    rng = np.random.default_rng(seed)
    M, W = 40, 8
    prefix, cold = rng.integers(0, 5, M), rng.random(M) < 0.4
    unit, query = rng.standard_normal((M, 3)), rng.standard_normal((1, 3))
    close = (query @ unit.T)[0]
    for cap, weight in ((0, 0.0), (1, -1.0), (3, -2.5), (20, 0.0), (5, -9.0)):
        beam = rng.permutation(np.flatnonzero(~cold))[:W].tolist()
        logp = np.sort(rng.uniform(-8, -1, W))[::-1]
        merged = _reference(beam, prefix, cold, close, cap, logp.tolist(), weight)
        ranks = prefix_rule_ranks(np.array([beam] * M), prefix, cold, np.arange(M), cap, np.repeat(query, M, 0), unit,
                                  np.repeat(logp[None], M, 0), weight)
        assert ranks.tolist() == [merged.index(t) + 1 if t in merged else MISS for t in range(M)]


@pytest.mark.parametrize("seed", [3, 4])
def test_users_with_their_own_beams_match_the_reference_one_list_at_a_time(seed):
    """Each user's beam differs (some short, with repeated prefixes), more users than one chunk, and duplicate
    item vectors (equal affinities, broken by item row): every rank equals the plain reference's."""
    rng = np.random.default_rng(seed)
    M, U, W = 80, 1100, 9
    prefix, cold = rng.integers(0, 6, M), rng.random(M) < 0.35
    unit, query = rng.standard_normal((M, 4)), rng.standard_normal((U, 4))
    unit[rng.integers(0, M, 20)] = unit[0]
    items = np.array([rng.permutation(np.flatnonzero(~cold))[:W] for _ in range(U)])
    short = np.arange(W) >= rng.integers(1, W + 1, U)[:, None]
    items[short] = -1  # short beams end in -1, scored -inf (as beam_search pads them)
    logp = np.where(short, -np.inf, -np.sort(rng.uniform(0, 6, (U, W)), 1))
    targets = rng.integers(0, M, U)
    for cap, weight in ((1, -0.7), (4, -2.0), (30, 0.0)):
        ranks = prefix_rule_ranks(items, prefix, cold, targets, cap, query, unit, logp, weight)
        both = placed_ranks(items, prefix, cold, targets, cap, query, unit, logp, (weight, 0.0))
        tiger = prefix_rule_ranks(items, prefix, cold, targets, cap, query, unit, logp, 0.0)
        assert both[0].tolist() == ranks.tolist() and both[1].tolist() == tiger.tolist()  # chosen once, placed twice
        for u in range(0, U, 7):
            keep = items[u] >= 0
            merged = _reference(items[u][keep].tolist(), prefix, cold, unit @ query[u], cap, logp[u][keep].tolist(),
                                weight)
            assert ranks[u] == (merged.index(targets[u]) + 1 if targets[u] in merged else MISS), (u, cap)


@pytest.mark.parametrize("seed", [0, 1])
def test_epsilon_zero_gives_the_beam_alone_at_every_depth(seed):
    rng = np.random.default_rng(seed)
    M, U, W = 50, 30, 10
    codes, cold = rng.integers(0, 3, (M, 3)), rng.random(M) < 0.3
    items = np.array([rng.permutation(np.flatnonzero(~cold))[:W] for _ in range(U)])
    items[:3, -2:] = -1  # short beams
    targets = rng.integers(0, M, U)
    beam_alone = np.where((items == targets[:, None]).any(1), (items == targets[:, None]).argmax(1) + 1, MISS)
    for depth in (1, 2, 3):
        prefix = codes[:, :depth] @ (3 ** np.arange(depth)[::-1])
        logp = -np.sort(rng.uniform(1, 5, (U, W)), 1)
        found = prefix_rule_ranks(items, prefix, cold, targets, 0, rng.standard_normal((U, 2)),
                                  rng.standard_normal((M, 2)), logp, -0.5)
        assert found.tolist() == beam_alone.tolist()


def test_a_shorter_prefix_reaches_a_cold_item_the_full_id_misses():
    """Cold item 3 shares only its first code with warm item 0: depth 2 misses it, depth 1 places it second."""
    codes, cold = np.array([[0, 0], [1, 0], [1, 1], [0, 1]]), np.array([0, 0, 0, 1], dtype=bool)
    items, targets = np.array([[0, 1, 2]]), np.array([3])
    assert prefix_rule_ranks(items, codes @ [2, 1], cold, targets, 2).tolist() == [MISS]
    assert prefix_rule_ranks(items, codes[:, 0], cold, targets, 2).tolist() == [2]


def test_the_depth_is_the_best_on_validation_cold_targets_then_all_then_the_deepest():
    flat = {1: 0.30, 2: 0.30, 3: 0.30}
    assert choose_depth({1: 0.05, 2: 0.02, 3: 0.0}, flat) == 1
    assert choose_depth({1: 0.0, 2: 0.0, 3: 0.0}, {1: 0.30, 2: 0.32, 3: 0.31}) == 2
    assert choose_depth({1: 0.0, 2: 0.0, 3: 0.0}, flat) == 3  # no cold target reached: TIGER's full ID


def test_the_weight_is_log_pi():
    assert calibrated_weight(1.0) == 0.0 and np.isclose(calibrated_weight(0.05), np.log(0.05))


def _tiny_log():
    """Item i is followed by i + 1 (12 warm items); cold item 12 shares its first code with items 4-7 only.

    Four users go ... 3, 4, 12, 5 (validation target 12, cold) and four ... 3, 4, 5, 12 (test target 12)."""
    from rqgmm.retrieval.sequences import build_sequences

    warm = [np.arange(s, s + 6) % 12 for s in range(12)] * 3
    sequences = warm + [np.array([1, 2, 3, 4, 12, 5])] * 4 + [np.array([1, 2, 3, 4, 5, 12])] * 4
    items = np.concatenate(sequences)
    users = np.repeat(np.arange(len(sequences)), 6)
    codes = np.column_stack([np.arange(13) // 4, np.arange(13) % 4])
    codes[12] = [1, 4]  # no warm item holds (1, 4): TIGER's full-ID match never reaches it
    return build_sequences(users, items, np.ones(len(items)), None, 13), codes


@pytest.mark.parametrize("epsilon", [0.1, 0.0])
def test_the_trained_rule_reaches_a_cold_target_by_a_shorter_prefix_and_epsilon_0_is_the_beam(epsilon):
    from dataclasses import replace

    from rqgmm.retrieval.model import ModelConfig
    from rqgmm.retrieval.train import QUICK, fit_retriever, histories
    from rqgmm.retrieval.vocab import ItemTokens

    seqs, codes = _tiny_log()
    vectors = np.random.default_rng(0).standard_normal((13, 8)).astype(np.float32)
    config = replace(QUICK, model=ModelConfig(dim=32, layers=1, heads=2), max_epochs=40, patience=40, lr=1e-2,
                     epsilon=epsilon)
    retriever = fit_retriever(seqs, ItemTokens.semantic(codes, [4, 5]), config, embeddings=vectors)
    by_rule, id_rank = retriever.rule_ranks(histories(seqs, "test", retriever.length), seqs.test)
    cold = seqs.test == 12
    assert cold.sum() == 4 and retriever.cold[12]
    if epsilon:
        assert retriever.depth == 1 and retriever.depth_recall["cold"] == {1: 1.0, 2: 0.0}
        assert (by_rule["prefix"][cold] <= 10).all()
        # TIGER's placement (w = 0) at its own chosen depth: cold targets no lower, warm ones no higher
        assert retriever.tiger_depth == 1 and retriever.tiger_recall["cold"] == {1: 1.0, 2: 0.0}
        assert (by_rule["tiger"][cold] <= by_rule["prefix"][cold]).all()
        assert (by_rule["tiger"][~cold] >= by_rule["prefix"][~cold]).all()
    else:
        assert retriever.depth == 2 and by_rule["prefix"].tolist() == id_rank.tolist()
        assert retriever.tiger_depth == 2 and by_rule["tiger"].tolist() == id_rank.tolist()
