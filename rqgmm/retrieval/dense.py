"""LIGER's cold-item rule: a dense re-rank merges the beam's warm items with unseen items, on one probability scale.

Training: besides the next tokens, the model learns a projection of the hidden
state that predicts an item (the state before the item's first token) to the
item-embedding space. Its loss is a sampled softmax (:func:`sampled_softmax_loss`):
the target item's scaled cosine against :data:`NEGATIVES` items drawn uniformly
from the catalogue, the scale learned; weighted by ``DENSE_WEIGHT`` and summed
over target items like the token loss
(:meth:`rqgmm.retrieval.model.NextItemModel.loss`). With uniform negatives
``scale x cosine`` estimates an item's log-probability up to a constant, so a
softmax over the cold items is a distribution over them.

Inference: the user's query is the projection of the state after the history
(unit length). A cold item c gets the log-probability
``log pi + log softmax_c(scale x cos(query, c))`` over the cold items, with
``pi`` the share of cold targets among the validation targets (add-one
smoothed: "the next item is cold"); a generated warm item gets
``log(1 - pi) + `` its beam log-probability. The ``cap`` cold items with the
highest cosine (``cap = floor(epsilon x beam)``, as the prefix rule's; ties by
item row) enter the list before the first warm item whose score theirs exceeds
(the warm scores as a running minimum, so the beam keeps its order). A cold
item thus takes a warm item's place only where the model holds it likelier.

The earlier rule compared cold cosines with the running minimum of the warm
items' cosines: on MovieLens-100k two cold items nearly always entered near the
top, pushing warm targets out of the top 10 (rqkmeans 0.0467 -> 0.0340,
one seed; issue 27).

Worked case (the test's): warm a, b, c with scores -1, -2, -3; cold x, y, z
with scores -2.5, -0.5, -9; cap 2 selects y, x. The list is y, a, b, x, c:
y ranks 1, a 2, x 4, c 5; z is not in it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from rqgmm.retrieval.metrics import MISS

#: Weight of the projection's loss beside the token cross-entropy (per target item; the token loss sums G terms).
DENSE_WEIGHT = 1.0
#: Cold-item rules of the retrieval task: TIGER's prefix rule (:mod:`.cold`) and this dense re-rank.
COLD_RULES = ("prefix", "dense")
#: Users merged at once (a (chunk, cold items) float32 block).
USER_CHUNK = 512
#: Uniform negatives per training step of the projection's sampled softmax.
NEGATIVES = 1024
#: The learned scale's start (1 / 0.07, as CLIP's) and its ceiling.
SCALE_INIT, SCALE_MAX = 1 / 0.07, 100.0


def sampled_softmax_loss(query: torch.Tensor, rows: torch.Tensor, target: torch.Tensor, vectors: torch.Tensor,
                         scale: torch.Tensor) -> torch.Tensor:
    """The summed loss over target slots: -log softmax of each target item's scaled cosine against uniform negatives.

    Parameters
    ----------
    query : FloatTensor (N, E), unit-length projected states
    rows : LongTensor (N,), the item row each state predicts
    target : BoolTensor (N,), the slots that count
    vectors : FloatTensor (M, E), the items' unit embeddings
    scale : FloatTensor (), the learned scale

    Draws :data:`NEGATIVES` rows (fewer for a smaller catalogue) from torch's RNG on the query's device;
    a negative equal to the target is left out. No host sync.
    """
    M = vectors.shape[0]
    negatives = torch.randint(0, M, (min(NEGATIVES, M),), device=query.device)
    positive = (query * vectors[rows]).sum(-1, keepdim=True)
    logits = scale * torch.cat([positive, query @ vectors[negatives].T], 1)
    same = torch.cat([torch.zeros_like(positive, dtype=torch.bool), negatives[None, :] == rows[:, None]], 1)
    logits = logits.masked_fill(same, float("-inf"))  # after the scale: its gradient never meets an infinity
    return ((torch.logsumexp(logits, 1) - logits[:, 0]) * target).sum()


def cold_share(cold: np.ndarray, valid: np.ndarray) -> float:
    """pi: the add-one-smoothed share of validation targets (U,) that are cold items (cold: bool (M,))."""
    return float((cold[valid].sum() + 1) / (len(valid) + 2))


def dense_rule_ranks(items: np.ndarray, logp: np.ndarray, query: np.ndarray, unit: np.ndarray, cold: np.ndarray,
                     targets: np.ndarray, cap: int, scale: float, share: float) -> np.ndarray:
    """1-based rank (U,) of each target in the beam's list merged with the cold items (MISS: not in it).

    Parameters
    ----------
    items : ndarray int (U, W), generated warm items best first (-1: empty)
    logp : ndarray float (U, W), their beam log-probabilities (-inf on empty slots)
    query : ndarray float (U, E), each user's projected state (unit length)
    unit : ndarray float (M, E), the items' unit embeddings
    cold : ndarray bool (M,), the items no training sequence holds
    targets : ndarray int (U,), item rows
    cap : int, the most cold items that enter a list
    scale : float, the projection's learned scale
    share : float in (0, 1), pi (:func:`cold_share`)
    """
    rank = np.full(len(targets), MISS, dtype=np.int64)
    cold_rows = np.flatnonzero(cold)
    warm = np.where(items >= 0, math.log1p(-share) + logp, -np.inf)
    for start in range(0, len(targets), USER_CHUNK):
        part = slice(start, start + USER_CHUNK)
        cold_logp = _cold_logp(query[part], unit[cold_rows], scale, share)
        rank[part] = _merge(items[part], warm[part], cold_logp, cold_rows, targets[part], cap)
    return rank


def _cold_logp(query: np.ndarray, cold_unit: np.ndarray, scale: float, share: float) -> np.ndarray:
    """log pi + log softmax over the cold items (U, C) of the scaled cosines.

    In place on one float64 block and one scratch block (the same operations in the same order as the formula).
    """
    logits = (query @ cold_unit.T).astype(np.float64)
    logits *= scale
    if not logits.shape[1]:
        return logits
    top = logits.max(1, keepdims=True)
    shifted = np.subtract(logits, top)
    np.exp(shifted, out=shifted)
    norm = np.log(shifted.sum(1, keepdims=True))
    del shifted
    out = np.add(math.log(share), logits, out=logits)
    out -= top
    out -= norm
    return out


def _merge(items: np.ndarray, warm: np.ndarray, cold_logp: np.ndarray, cold_rows: np.ndarray, targets: np.ndarray,
           cap: int) -> np.ndarray:
    """:func:`dense_rule_ranks` on one chunk of users, from the warm (U, W) and cold (U, C) log-probabilities."""
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
    chosen, chosen_logp = _top_cold(cold_logp, cold_rows, take)
    before = (chosen_logp[:, :, None] > calibrated[:, None, :]).sum(1)  # (U, W) cold items ahead of slot j
    rank[found] = j[found] + 1 + before[found, j[found]]
    cold_hit = (chosen == targets[:, None]) & ~found[:, None]
    rows = np.flatnonzero(cold_hit.any(1))
    i = cold_hit[rows].argmax(1)
    ahead = (calibrated[rows] >= chosen_logp[rows, i][:, None]).sum(1)
    rank[rows] = i + 1 + ahead
    return rank


def _top_cold(cold_logp: np.ndarray, cold_rows: np.ndarray, take: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``take`` cold items (U, take) with the highest log-probability (U, C) per user, ties by item row
    (``cold_rows`` (C,) ascending), best first, and their log-probabilities (U, take).

    The ``take``-th largest value of each row is found by a partition; only the entries at or above it (ties
    included) are ordered, so a chunk costs O(U x C), not a sort of every row.
    """
    U, C = cold_logp.shape
    if not 0 < take < C:  # nothing to select, or every cold item
        order = np.lexsort((np.broadcast_to(np.arange(C), cold_logp.shape), -cold_logp), axis=1)[:, :take]
        return cold_rows[order], np.take_along_axis(cold_logp, order, 1)
    threshold = np.partition(cold_logp, C - take, axis=1)[:, C - take]
    user, column = np.nonzero(cold_logp >= threshold[:, None])  # each user's best `take`, and ties at the threshold
    value = cold_logp[user, column]
    order = np.lexsort((column, -value, user))
    user, column, value = user[order], column[order], value[order]
    place = np.arange(len(user)) - np.searchsorted(user, user)
    kept = place < take
    chosen, chosen_logp = np.empty((U, take), dtype=np.int64), np.empty((U, take))
    chosen[user[kept], place[kept]] = cold_rows[column[kept]]
    chosen_logp[user[kept], place[kept]] = value[kept]
    return chosen, chosen_logp
