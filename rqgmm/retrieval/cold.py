"""TIGER's cold-item rule: unseen items whose ID shares a generated prefix join the generated list.

With generated dedup tokens (:mod:`.vocab`), the beam runs over the full IDs of
the *warm* items (those in a training sequence): the model never saw a cold
item's dedup token, so it would rank them last anyway. Each generated warm
item is followed by the cold items whose L codes equal its own (in item-row
order, each prefix's cold items once: after its first generated item), until
``cap`` cold items have joined the list. ``cap = floor(epsilon x beam)``: with
the default epsilon :data:`EPSILON` and beam 20, at most 2 cold items.

Worked case (the test's): generated warm items a, b, c with prefixes p, q, p;
cold items x, y with prefix p and z with prefix q; cap 2. The list is
a, x, y, b, c (z is left out: the cap is spent); target y ranks 3, c ranks 5.
"""

from __future__ import annotations

import numpy as np

from rqgmm.retrieval.metrics import MISS

#: The default epsilon: the share of the generated list that cold items may take (TIGER's rule, TIGER leaves it open).
EPSILON = 0.1


def cold_cap(epsilon: float, beam: int) -> int:
    """The most cold items the rule adds to a list of ``beam`` generated items."""
    return int(np.floor(epsilon * beam + 1e-9))


def prefix_rule_ranks(items: np.ndarray, prefix: np.ndarray, cold: np.ndarray, targets: np.ndarray,
                      cap: int) -> np.ndarray:
    """1-based rank (U,) of each target in the generated list with the cold items added (MISS: not in it).

    Parameters
    ----------
    items : ndarray int (U, W), generated warm items best first (-1: empty)
    prefix : ndarray int64 (M,), each item's prefix key (its L codes)
    cold : ndarray bool (M,), the items no training sequence holds
    targets : ndarray int (U,), item rows
    cap : int, the most cold items added per list
    """
    U, W = items.shape
    cold_rows = np.flatnonzero(cold)
    cold_rows = cold_rows[np.lexsort((cold_rows, prefix[cold_rows]))]  # by prefix, then item row
    cold_keys = prefix[cold_rows]
    keys = np.where(items >= 0, prefix[np.maximum(items, 0)], -1)
    earlier = (keys[:, :, None] == keys[:, None, :]) & np.tri(W, k=-1, dtype=bool)[None]
    first = (items >= 0) & ~earlier.any(2)
    lo, hi = np.searchsorted(cold_keys, keys, "left"), np.searchsorted(cold_keys, keys, "right")
    count = np.where(first, hi - lo, 0)
    added = np.minimum(np.cumsum(count, 1), cap)  # cold items in the list up to and including slot j
    before = added - np.diff(added, axis=1, prepend=0)
    rank = np.full(U, MISS, dtype=np.int64)
    hit = items == targets[:, None]
    j = hit.argmax(1)
    warm = hit.any(1)
    rank[warm] = j[warm] + 1 + before[warm, j[warm]]
    target_cold = cold[targets] & ~warm
    order_in = _place_in_prefix(cold_rows, cold_keys, len(prefix))[targets]
    match = (keys == prefix[targets][:, None]) & first
    slot = match.argmax(1)
    rows = np.flatnonzero(target_cold & match.any(1))
    taken = added[rows, slot[rows]] - before[rows, slot[rows]]
    ok = order_in[rows] <= taken
    rank[rows[ok]] = slot[rows[ok]] + 1 + before[rows[ok], slot[rows[ok]]] + order_in[rows[ok]]
    return rank


def _place_in_prefix(cold_rows: np.ndarray, cold_keys: np.ndarray, n_items: int) -> np.ndarray:
    """Each item's 1-based place (M,) among the cold items of its prefix (0 for a warm item)."""
    where = np.zeros(n_items, dtype=np.int64)
    where[cold_rows] = np.arange(len(cold_rows)) - np.searchsorted(cold_keys, cold_keys, "left") + 1
    return where
