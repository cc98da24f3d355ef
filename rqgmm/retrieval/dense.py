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

from rqgmm.retrieval.metrics import MISS, first_per_user
from rqgmm.runtime.device import cuda_tf32

#: Weight of the projection's loss beside the token cross-entropy (per target item; the token loss sums G terms).
DENSE_WEIGHT = 1.0
#: Cold-item rules of the retrieval task: TIGER's prefix rule (:mod:`.cold`) placed by log pi or as TIGER placed
#: it, and this dense re-rank.
COLD_RULES = ("prefix", "tiger", "dense")
#: Users merged at once on the host (their (chunk, cold items) float32 cosines, one matrix product).
USER_CHUNK = 512
#: Users whose float64 scores are held at once on the host (a (block, cold items) block: a few MB, in the cache).
ROW_BLOCK = 32
#: Bytes of the (users, cold items) float64 block scored at once on a device (a few such blocks are alive).
DEVICE_BLOCK_BYTES = 1 << 30
#: Device types whose cold items are scored in numpy on the host (exactly as before; torch's CPU softmax was no
#: faster); others in torch on the device, from DEVICE_MIN_COLD cold items on. Fewer stay on the host (a small
#: block): MovieLens-100k's whole catalogue is 1,682 items, so its dense ranks are the host's bit for bit.
HOST_TYPES = ("cpu",)
DEVICE_MIN_COLD = 2000
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
                     targets: np.ndarray, cap: int, scale: float, share: float,
                     device: str | torch.device = "cpu") -> np.ndarray:
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
    device : where the cold items are scored (U x C cosines and a softmax): on the CPU (:data:`HOST_TYPES`) or
        for fewer than :data:`DEVICE_MIN_COLD` cold items in numpy, :data:`USER_CHUNK` users a matrix product
        and :data:`ROW_BLOCK` users' float64 scores at a time (:func:`_top_cold_host`);
        otherwise in torch on ``device``, :data:`DEVICE_BLOCK_BYTES` of float64 scores at a time, only each
        user's best ``cap`` (and ties) read back. Both are float32 cosines and a float64 softmax; they may
        differ in the last bits of a product or a sum.
    """
    device = torch.device(device)
    rank = np.full(len(targets), MISS, dtype=np.int64)
    cold_rows = np.flatnonzero(cold)
    take = min(cap, len(cold_rows))
    warm = np.where(items >= 0, math.log1p(-share) + logp, -np.inf)
    cold_unit = unit[cold_rows]
    on_host = device.type in HOST_TYPES or len(cold_rows) < DEVICE_MIN_COLD
    if on_host:
        chunk = USER_CHUNK
    else:
        chunk = max(1, DEVICE_BLOCK_BYTES // (8 * max(1, len(cold_rows))))
        cold_unit = torch.as_tensor(cold_unit, device=device)
    for start in range(0, len(targets), chunk):
        part = slice(start, start + chunk)
        if on_host:
            chosen = _top_cold_host(query[part] @ cold_unit.T, cold_rows, scale, share, take)
        else:
            chosen = _top_cold_torch(torch.as_tensor(query[part], device=device), cold_unit, cold_rows, scale, share,
                                     take)
        rank[part] = _merge(items[part], warm[part], *chosen, targets[part])
    return rank


def _logp_of(cosines: np.ndarray, scale: float, share: float) -> np.ndarray:
    """log pi + log softmax over the cold items (U, C) of the scaled cosines (U, C).

    In place on one float64 block and one scratch block (the same operations in the same order as the formula).
    """
    logits, top, norm = _softmax_terms(cosines, scale)
    if not logits.shape[1]:
        return logits
    out = np.add(math.log(share), logits, out=logits)
    out -= top
    out -= norm
    return out


def _softmax_terms(cosines: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The logits (U, C) float64 (``scale x`` the cosines), each row's maximum (U, 1) and the log of its sum of
    ``exp(logit - maximum)`` (U, 1); None, None without cold items."""
    logits = np.multiply(cosines, scale, dtype=np.float64)  # float32 -> float64 is exact: as astype, then *=
    if not logits.shape[1]:
        return logits, None, None
    top = logits.max(1, keepdims=True)
    shifted = np.subtract(logits, top)
    np.exp(shifted, out=shifted)
    return logits, top, np.log(shifted.sum(1, keepdims=True))


def _top_cold_host(cosines: np.ndarray, cold_rows: np.ndarray, scale: float, share: float,
                   take: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_top_cold` of :func:`_logp_of` (the same items and bits) from the cosines (U, C) float32, scored
    :data:`ROW_BLOCK` users at a time (each block's float64 passes stay in the cache)."""
    U, C = cosines.shape
    if not 0 < take < C:
        return _top_cold(_logp_of(cosines, scale, share), cold_rows, take)
    found = [_best_of_block(cosines[first:first + ROW_BLOCK], scale, share, take, first)
             for first in range(0, U, ROW_BLOCK)]
    user, column, value = (np.concatenate(part) for part in zip(*found))
    return _ordered(U, take, cold_rows, user, column, value)


def _best_of_block(cosines: np.ndarray, scale: float, share: float, take: int,
                   first: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each user's entries (user, column, log-probability) at or above its ``take``-th highest log-probability,
    from the cosines (B, C) float32 (0 < take < C); users numbered from ``first``.

    A log-probability is a monotone function of the logit (``((log pi + logit) - maximum) - log norm``, the
    operations of :func:`_logp_of`), so only the ``take + 1`` highest logits of a row get theirs: where the
    ``take + 1``-th is strictly below the ``take``-th, the ``take`` highest are exactly the entries at or above
    the threshold; a row tied there (or holding NaN) is scored whole and its entries compared as before (ties of
    log-probabilities whose logits differ, too: the rounding of ``log pi + logit`` can merge them).
    """
    logits, top, norm = _softmax_terms(cosines, scale)
    best, column = _highest(logits, take + 1)
    value = _logp_at(best, top, norm, share)
    clean = value[:, take] < value[:, take - 1]  # False with NaN: a NaN cosine makes its row's norm NaN
    rows = np.flatnonzero(clean)
    user, column, value_at = np.repeat(rows, take), column[rows, :take].ravel(), value[rows, :take].ravel()
    tied = np.flatnonzero(~clean)
    if len(tied):
        out = _logp_at(logits[tied], top[tied], norm[tied], share)
        at, col = np.nonzero(out >= value[tied, take - 1:take])
        user, column = np.r_[user, tied[at]], np.r_[column, col]
        value_at = np.r_[value_at, out[at, col]]
    return user + first, column, value_at


def _logp_at(logits: np.ndarray, top: np.ndarray, norm: np.ndarray, share: float) -> np.ndarray:
    """The log-probabilities of some of a row's logits (B, k), from its maximum and log-norm (B, 1): the operations
    of :func:`_logp_of`, in its order (so the same bits), on a new array."""
    return ((math.log(share) + logits) - top) - norm


def _highest(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` highest entries of each row of values (B, C), highest first (B, k), and their columns (B, k).

    ``k`` passes of ``argmax`` (for a few, cheaper than sorting or partitioning each row); each entry found is
    set to -inf for the next pass and restored at the end, so ``values`` is unchanged on return. Equal values:
    any of them.
    """
    rows = np.arange(len(values))
    best, column = np.empty((len(values), k), dtype=values.dtype), np.empty((len(values), k), dtype=np.int64)
    for i in range(k):
        column[:, i] = values.argmax(1)
        best[:, i] = values[rows, column[:, i]]
        values[rows, column[:, i]] = -np.inf
    for i in reversed(range(k)):  # the first value found last: right also where a pass found a column again
        values[rows, column[:, i]] = best[:, i]
    return best, column


def _merge(items: np.ndarray, warm: np.ndarray, chosen: np.ndarray, chosen_logp: np.ndarray,
           targets: np.ndarray) -> np.ndarray:
    """:func:`dense_rule_ranks` on one chunk of users, from the warm log-probabilities (U, W) and the chosen cold
    items (U, T), best first, with theirs (U, T)."""
    U = items.shape[0]
    calibrated = np.minimum.accumulate(warm, axis=1)
    rank = np.full(U, MISS, dtype=np.int64)
    hit = items == targets[:, None]
    found = hit.any(1)
    j = hit.argmax(1)
    if not chosen.shape[1]:
        rank[found] = j[found] + 1
        return rank
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
    return _ordered(U, take, cold_rows, user, column, cold_logp[user, column])


@torch.no_grad()
def _top_cold_torch(query: torch.Tensor, cold_unit: torch.Tensor, cold_rows: np.ndarray, scale: float, share: float,
                    take: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_top_cold` of :func:`_logp_of` (of query @ cold_unit.T), in torch on the tensors' device (query
    (U, E), cold_unit (C, E)): the threshold and the entries at or above it on the device, their order on the host."""
    U = query.shape[0]
    if not take:
        return np.empty((U, 0), dtype=np.int64), np.empty((U, 0))
    with cuda_tf32(False):  # float32 products, as numpy's
        cold_logp = (query @ cold_unit.T).double().mul_(scale)
    top = cold_logp.max(1, keepdim=True).values
    norm = (cold_logp - top).exp_().sum(1, keepdim=True).log_()
    cold_logp.add_(math.log(share)).sub_(top).sub_(norm)  # (log pi + logits) - top - norm, as _logp_of
    threshold = torch.topk(cold_logp, take, dim=1).values[:, -1:]
    user, column = torch.nonzero(cold_logp >= threshold, as_tuple=True)
    value = cold_logp[user, column]
    return _ordered(U, take, cold_rows, user.cpu().numpy(), column.cpu().numpy(), value.cpu().numpy())


def _ordered(U: int, take: int, cold_rows: np.ndarray, user: np.ndarray, column: np.ndarray,
             value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each user's first ``take`` entries (user, column, value) by (-value, column): their cold rows and values."""
    return tuple(first_per_user(U, take, user, (column, -value), (cold_rows[column], value), (-1, np.nan)))
