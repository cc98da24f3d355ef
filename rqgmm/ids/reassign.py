"""Collision-free last level: colliding items move to the nearest free last-level code of their prefix.

Items whose full ID (all L codes) another item also holds "collide". Within
each prefix (the first L − 1 codes) that holds colliding items, the last-level
codes not held by any non-colliding item of that prefix are free; the
colliding items of the prefix are matched to those codes (their own included)
by an optimal matching -- Hungarian, ``scipy.optimize.linear_sum_assignment`` --
that minimises the total squared reconstruction error
|x − decode(prefix, z)|². So:

- non-colliding items never change, and no item's prefix changes;
- where a prefix holds at most K_L items (the last level has room), every full
  ID in it becomes distinct;
- where it holds more, the matching fills every free code and the items left
  over keep their code: :func:`rqgmm.ids.suffix.unique_suffix` then tells them apart
  (the suffix fallback).
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.optimize import linear_sum_assignment

from rqgmm.errors import InputError
from rqgmm.runtime.validation import as_numpy
from rqgmm.ids.suffix import unique_suffix

logger = logging.getLogger(__name__)

DECODE_BLOCK = 1 << 22  # floats per block of candidate reconstructions


def colliding(codes: np.ndarray) -> np.ndarray:
    """Mask (N,) of the items whose full ID (row of codes (N, L)) another item also holds."""
    _, group, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return counts[group.reshape(-1)] > 1


def last_level_costs(model, X: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """|x_i − decode(codes_i[:L−1], z)|² (n, K_L) for every last-level code z; X (n, D), codes (n, L)."""
    n, levels = codes.shape
    k = model.effective_codebook_sizes[levels - 1]
    rows = max(1, DECODE_BLOCK // (k * model.n_features_in_))
    out = np.empty((n, k), dtype=np.float64)
    for start in range(0, n, rows):
        block = codes[start : start + rows]
        candidates = np.repeat(block, k, axis=0)
        candidates[:, -1] = np.tile(np.arange(k), len(block))
        x_hat = as_numpy(model.decode(candidates)).astype(np.float64).reshape(len(block), k, -1)
        x = np.asarray(X[start : start + rows], dtype=np.float64)
        out[start : start + rows] = ((x[:, None, :] - x_hat) ** 2).sum(-1)
    return out


def reassign_last_level(codes: np.ndarray, costs: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """Codes (N, L) with the ``moving`` items' last codes matched to the free codes of their prefix.

    Parameters
    ----------
    codes : (N, L) int64
    costs : (M, K_L) float, one row per moving item (in order): the cost of each last-level code
    moving : (N,) bool, M items (the colliding ones)
    """
    codes = codes.copy()
    index = np.flatnonzero(moving)
    prefix = codes[:, :-1]
    _, group = np.unique(prefix, axis=0, return_inverse=True)
    group = group.reshape(-1)
    taken = {}  # prefix group -> last codes held by items that stay
    for g, z in zip(group[~moving].tolist(), codes[~moving, -1].tolist()):
        taken.setdefault(g, set()).add(z)
    order = np.argsort(group[index], kind="stable")
    starts = np.r_[0, np.flatnonzero(np.diff(group[index][order])) + 1, len(order)]
    for a, b in zip(starts[:-1], starts[1:]):
        rows = order[a:b]  # positions in index / costs
        held = taken.get(int(group[index[rows[0]]]), set())
        free = np.array([z for z in range(costs.shape[1]) if z not in held], dtype=np.int64)
        matched, slot = linear_sum_assignment(costs[np.ix_(rows, free)])
        codes[index[rows[matched]], -1] = free[slot]
    return codes


def collision_free(model, X, codes) -> tuple[np.ndarray, np.ndarray]:
    """Codes (N, L) without collisions where the last level has room, and the suffix (N,) for the rest.

    ``model`` must reconstruct (``model.reconstructs``): the nearest free code is
    the one whose reconstruction is nearest to the item's embedding X (N, D).
    """
    if not model.reconstructs:
        raise InputError(f"reassigning colliding codes needs a model whose decode reconstructs the embeddings; "
                         f"{model.method} does not: use the suffix (--unique suffix)")
    codes = np.asarray(codes, dtype=np.int64)
    moving = colliding(codes)
    costs = last_level_costs(model, X[np.flatnonzero(moving)] if moving.any() else X[:0], codes[moving])
    out = reassign_last_level(codes, costs, moving)
    suffix = unique_suffix(out)
    logger.info("%d of %d items collided: %d moved to a free last-level code, %d kept a suffix (full prefix)",
                int(moving.sum()), len(codes), int((out != codes).any(1).sum()), int((suffix > 0).sum()))
    return out, suffix

