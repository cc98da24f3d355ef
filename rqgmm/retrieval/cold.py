"""TIGER's cold-item rule: unseen items whose ID shares a generated prefix join the generated list.

With generated dedup tokens (:mod:`.vocab`), the beam runs over the full IDs of
the *warm* items (those in a training sequence): the model never saw a cold
item's dedup token, so it would rank them last anyway. A cold item is a
*candidate* of a user's list when its first ``depth`` codes equal those of a
generated warm item. Candidates are taken by the slot of their prefix's first
generated item (the prefix's likeliest generated item), then by content
affinity (the user's recent-items query, :func:`~.baselines.recent_query`, dot
the item's unit embedding; none given: all equal), then by item row, until
``cap = floor(epsilon x beam)`` have joined (default epsilon :data:`EPSILON`,
beam 20: at most 2). The warm items keep the beam's order, so epsilon 0 gives
the beam's list unchanged.

Where a candidate enters: TIGER's rule puts it right after its prefix's first
generated item. Given the beam's log-probabilities and a log weight ``w``
(:func:`calibrated_weight`: ``log pi``, pi the validation share of cold
targets), a candidate whose prefix's first item has log-probability ``l``
scores ``l + w`` ("as likely as that warm item, times the chance that the next
item is cold at all") and enters after every warm item scoring at least that.
``w = 0`` is TIGER's placement. A model's list is ranked both ways (:data:`PLACEMENTS`): by ``log pi``, which
keeps a cold item out of the top 10 where the beam's warm items are much likelier (on the 5M-row planted log,
a topic's cold items number in the hundreds, so each is far less likely than a warm item), and by TIGER's
placement, which gives the cap's slots to cold items and costs warm recall the items they push down; the
evaluation reports both, so the trade is the reader's to see.

``depth = L`` (all codes) is TIGER's rule as published. On MovieLens-100k
(rqkmeans 3 x 128, seed 0) only 3 of 13 distinct cold test items share all 3
codes with a warm item, so the task picks the depth on the validation split
(:func:`choose_depth`: the depth with the highest validation Recall@10 over the
cold targets, then over all targets, then the deepest); the user's epsilon
already bounds what cold items may cost the warm ones, and the test split
never takes part.

Worked case (the test's): generated warm items a, b, c with prefixes p, q, p;
cold items x, y with prefix p and z with prefix q; cap 2, no affinity, w = 0.
The list is a, x, y, b, c (z is left out: the cap is spent); target y ranks 3,
c ranks 5. With affinities x 0.1, y 0.9 it is a, y, x, b, c; with cap 1, a, y,
b, c. With log-probabilities -1, -2, -3 and w = -1.5, x and y score -2.5 and
enter after b: a, b, y, x, c.
"""

from __future__ import annotations

import numpy as np

from rqgmm.retrieval.metrics import MISS, first_per_user

#: The default epsilon: the share of the generated list that cold items may take (TIGER's rule, TIGER leaves it open).
EPSILON = 0.1
#: The prefix rule's placements and their weights: "prefix" by ``log pi`` (:func:`calibrated_weight`: None, the
#: retriever's calibrated weight), "tiger" right after the prefix's first generated item (w = 0).
PLACEMENTS = {"prefix": None, "tiger": 0.0}
#: Users ranked at once (their candidates: the cold items of the prefixes their lists generated, first slots first).
USER_CHUNK = 512


def cold_cap(epsilon: float, beam: int) -> int:
    """The most cold items the rule adds to a list of ``beam`` generated items."""
    return int(np.floor(epsilon * beam + 1e-9))


def calibrated_weight(share: float) -> float:
    """The log weight ``w = log pi`` of a cold candidate beside its prefix's first generated item (pi in (0, 1])."""
    return float(np.log(share))


def prefix_rule_ranks(items: np.ndarray, prefix: np.ndarray, cold: np.ndarray, targets: np.ndarray, cap: int,
                      query: np.ndarray | None = None, unit: np.ndarray | None = None, logp: np.ndarray | None = None,
                      weight: float = 0.0) -> np.ndarray:
    """1-based rank (U,) of each target in the generated list with the cold items added (MISS: not in it).

    Parameters
    ----------
    items : ndarray int (U, W), generated warm items best first (-1: empty)
    prefix : ndarray int64 (M,), each item's prefix key (its first ``depth`` codes)
    cold : ndarray bool (M,), the items no training sequence holds
    targets : ndarray int (U,), item rows
    cap : int, the most cold items added per list
    query : ndarray float (U, E) or None, each user's content query (:func:`~.baselines.recent_query`)
    unit : ndarray float (M, E) or None, the items' unit embeddings; the affinity of a cold item to a user is
        ``query @ unit[item]`` (None: all equal, item-row order within a prefix)
    logp : ndarray float (U, W) or None, the beam's log-probabilities (non-increasing; None: TIGER's placement)
    weight : float <= 0, the log weight w of a candidate beside its prefix's first item (0: TIGER's placement)
    """
    return placed_ranks(items, prefix, cold, targets, cap, query, unit, logp, (weight,))[0]


def placed_ranks(items: np.ndarray, prefix: np.ndarray, cold: np.ndarray, targets: np.ndarray, cap: int,
                 query: np.ndarray | None, unit: np.ndarray | None, logp: np.ndarray | None,
                 weights: tuple[float, ...]) -> list[np.ndarray]:
    """:func:`prefix_rule_ranks` at each placement weight of ``weights``, one rank array (U,) each.

    The candidates that join a list do not depend on the weight, only where they enter: they are chosen once
    (the affinity products, most of the cost) and placed at each weight.
    """
    cold_rows = np.flatnonzero(cold)
    found = [np.full(len(targets), MISS, dtype=np.int64) for _ in weights]
    for start in range(0, len(targets), USER_CHUNK):
        part = slice(start, start + USER_CHUNK)
        chosen, slot = _chosen(items[part], prefix, cold_rows, None if query is None else query[part], unit, cap)
        for rank, weight in zip(found, weights):
            after = _after(slot, None if logp is None else logp[part], weight)
            rank[part] = _ranks(items[part], chosen, after, targets[part])
    return found


def _chosen(items: np.ndarray, prefix: np.ndarray, cold_rows: np.ndarray, query: np.ndarray | None,
            unit: np.ndarray | None, cap: int) -> tuple[np.ndarray, np.ndarray]:
    """The cold items (U, T) that join each list, by candidate order, and their prefix's first slot (U, T) (W: none).

    Only the candidates that can join are ordered: the cold items of a user's generated prefixes, slot by slot,
    until ``cap`` of them are in hand (the later slots' cannot pass them); their affinity ``query @ unit`` is
    computed for those pairs alone (``query`` None: all equal).
    """
    U, W = items.shape
    take = min(cap, len(cold_rows))
    chosen, slots = np.full((U, take), -1, dtype=np.int64), np.full((U, take), W, dtype=np.int64)
    if not take:
        return chosen, slots
    by_prefix = np.argsort(prefix[cold_rows], kind="stable")  # cold items grouped by prefix, in row order within
    distinct, starts, sizes = np.unique(prefix[cold_rows][by_prefix], return_index=True, return_counts=True)
    keys = np.where(items >= 0, prefix[np.maximum(items, 0)], -1)
    group = np.minimum(np.searchsorted(distinct, keys), len(distinct) - 1)
    earlier = (keys[:, :, None] == keys[:, None, :]) & np.tri(W, k=-1, dtype=bool)[None]
    user, slot = np.nonzero((items >= 0) & (distinct[group] == keys) & ~earlier.any(2))  # a prefix's first slot
    group = group[user, slot]
    n = sizes[group]
    ahead = np.cumsum(n) - n
    ahead -= ahead[np.searchsorted(user, user)]  # candidates of the user's earlier slots
    needed = ahead < take
    user, slot, group, n = user[needed], slot[needed], group[needed], n[needed]
    user, slot = np.repeat(user, n), np.repeat(slot, n)
    rows = cold_rows[by_prefix[np.repeat(starts[group] - np.cumsum(n) + n, n) + np.arange(n.sum())]]
    close = np.zeros(len(rows)) if query is None else np.einsum("ij,ij->i", query[user], unit[rows])
    return tuple(first_per_user(U, take, user, (rows, -close, slot), (rows, slot), (-1, W)))


def _after(slot: np.ndarray, logp: np.ndarray | None, weight: float) -> np.ndarray:
    """The warm items (U, T) ahead of each chosen cold item: its slot's and those scoring >= its score (W: none).

    Non-decreasing along a row, as ``slot`` is: the chosen items keep their order in the list.
    """
    if logp is None or not slot.shape[1]:
        return slot + 1
    W = logp.shape[1]
    score = np.take_along_axis(logp, np.minimum(slot, W - 1), 1) + weight
    after = np.maximum(slot + 1, (logp[:, None, :] >= score[:, :, None]).sum(2))
    return np.where(slot < W, after, W + 1)


def _ranks(items: np.ndarray, chosen: np.ndarray, after: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based ranks (U,) in the lists: warm item j follows the chosen cold items with at most j warm items ahead."""
    W = items.shape[1]
    rank = np.full(len(targets), MISS, dtype=np.int64)
    hit = items == targets[:, None]
    found, j = hit.any(1), hit.argmax(1)
    joined = after <= W
    rank[found] = j[found] + 1 + (joined & (after <= j[:, None])).sum(1)[found]
    cold_hit = (chosen == targets[:, None]) & joined & ~found[:, None]
    rows = np.flatnonzero(cold_hit.any(1))
    if len(rows):
        i = cold_hit[rows].argmax(1)
        rank[rows] = after[rows, i] + i + 1  # the warm items ahead of it, the cold items chosen before it
    return rank


def choose_depth(cold_recall: dict[int, float], all_recall: dict[int, float]) -> int:
    """The prefix depth with the highest validation Recall@10 over cold targets, then over all, then the deepest.

    ``cold_recall``, ``all_recall``: depth -> validation Recall@10 over the cold targets and over every target.
    """
    return max(cold_recall, key=lambda d: (cold_recall[d], all_recall[d], d))
