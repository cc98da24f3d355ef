"""LIGER's cold-item rule: a dense re-rank merges the beam's warm items with unseen items by cosine.

Training: besides the next tokens, the model learns a projection of the hidden
state that predicts an item (the state before the item's first token) to the
item-embedding space; its loss is ``DENSE_WEIGHT x (1 - cosine)`` to the target
item's (unit) embedding, summed over target items like the token loss
(:meth:`rqgmm.retrieval.model.NextItemModel.loss`).

Inference: the user's query is the projection of the state after the history
(unit length). Each generated warm item's calibrated score is the running
minimum of the query's cosines to the beam's items so far (so the scores fall
along the beam's order, which they keep); the ``cap`` cold items with the
highest cosine to the query (``cap = floor(epsilon x beam)``, as the prefix
rule's; ties by item row) enter the list before the first warm item whose
calibrated score their cosine exceeds.

Worked case (the test's): beam a, b, c with cosines 0.9, 0.5, 0.7 (calibrated
0.9, 0.5, 0.5); cold x 0.6, y 0.95, z 0.1; cap 2 selects y, x. The list is
y, a, x, b, c: y ranks 1, a 2, x 3, c 5; z is not in it.
"""

from __future__ import annotations

import numpy as np

from rqgmm.retrieval.metrics import MISS

#: Weight of the cosine loss beside the token cross-entropy (per target item; the token loss sums G terms).
DENSE_WEIGHT = 1.0
#: Cold-item rules of the retrieval task: TIGER's prefix rule (:mod:`.cold`) and this dense re-rank.
COLD_RULES = ("prefix", "dense")
#: Users merged at once (a (chunk, cold items) float32 block).
USER_CHUNK = 512


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows (M, E) scaled to unit length (zero rows stay zero), float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def dense_rule_ranks(items: np.ndarray, query: np.ndarray, unit: np.ndarray, cold: np.ndarray,
                     targets: np.ndarray, cap: int) -> np.ndarray:
    """1-based rank (U,) of each target in the beam's list merged with the cold items (MISS: not in it).

    Parameters
    ----------
    items : ndarray int (U, W), generated warm items best first (-1: empty)
    query : ndarray float (U, E), each user's projected state (unit length)
    unit : ndarray float (M, E), the items' unit embeddings
    cold : ndarray bool (M,), the items no training sequence holds
    targets : ndarray int (U,), item rows
    cap : int, the most cold items that enter a list
    """
    rank = np.full(len(targets), MISS, dtype=np.int64)
    cold_rows = np.flatnonzero(cold)
    for start in range(0, len(targets), USER_CHUNK):
        part = slice(start, start + USER_CHUNK)
        rank[part] = _merge(items[part], query[part], unit, cold_rows, targets[part], cap)
    return rank


def _merge(items: np.ndarray, query: np.ndarray, unit: np.ndarray, cold_rows: np.ndarray, targets: np.ndarray,
           cap: int) -> np.ndarray:
    """:func:`dense_rule_ranks` on one chunk of users."""
    U = items.shape[0]
    warm_cos = np.einsum("ue,uwe->uw", query, unit[np.maximum(items, 0)])
    calibrated = np.minimum.accumulate(np.where(items >= 0, warm_cos, -np.inf), axis=1)
    take = min(cap, len(cold_rows))
    chosen = np.zeros((U, take), dtype=np.int64)
    chosen_cos = np.zeros((U, take), dtype=np.float32)
    if take:
        scores = query @ unit[cold_rows].T  # (U, C)
        order = np.lexsort((np.broadcast_to(cold_rows, scores.shape), -scores), axis=1)[:, :take]
        chosen, chosen_cos = cold_rows[order], np.take_along_axis(scores, order, 1)
    rank = np.full(U, MISS, dtype=np.int64)
    hit = items == targets[:, None]
    warm = hit.any(1)
    j = hit.argmax(1)
    before = (chosen_cos[:, :, None] > calibrated[:, None, :]).sum(1)  # (U, W) cold items ahead of slot j
    rank[warm] = j[warm] + 1 + before[warm, j[warm]]
    if not take:
        return rank
    cold_hit = (chosen == targets[:, None]) & ~warm[:, None]
    rows = np.flatnonzero(cold_hit.any(1))
    i = cold_hit[rows].argmax(1)
    ahead = (calibrated[rows] >= chosen_cos[rows, i][:, None]).sum(1)
    rank[rows] = i + 1 + ahead
    return rank
