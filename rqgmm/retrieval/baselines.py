"""The two untrained baselines of every retrieval report: most-popular and content KNN.

Both rank the whole catalogue for each test user, on the same leave-one-out
split as the models, and (as the models' beam) keep the user's earlier items
in the list. Ties are broken by item row.

- **most-popular**: items by training-sequence count, most first; the same list for every user.
- **content KNN**: the items whose embedding is nearest (cosine) to the
  recency-weighted mean of the user's last :data:`RECENT` history items'
  embeddings (weight ``DECAY ** age``, age 0 for the latest). It needs no
  training interaction of the item, so it is the obvious cold-start baseline.
  On a GPU its (users x M) cosines are computed there, a block at a time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch

from rqgmm.runtime.device import cuda_tf32
from rqgmm.runtime.validation import as_numpy

MOST_POPULAR, CONTENT_KNN = "most-popular", "content-knn"
RECENT, DECAY = 5, 0.7
#: Users scored at once by content KNN on the CPU (a (chunk, M) float32 block).
USER_CHUNK = 512
#: Bytes of (users x M) float32 cosines content KNN scores at once on another device.
DEVICE_BLOCK_BYTES = 1 << 30


def most_popular_ranks(popularity: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based rank (U,) of each target item in the list of all M items by popularity (M,), most first."""
    order = np.lexsort((np.arange(len(popularity)), -np.asarray(popularity)))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(1, len(order) + 1)
    return rank[targets]


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows (M, E) scaled to unit length (zero rows stay zero), float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def recent_query(unit: np.ndarray, history: np.ndarray) -> np.ndarray:
    """Each user's content query (U, E): the ``DECAY ** age``-weighted sum of the unit embeddings ``unit`` (M, E)
    of the last :data:`RECENT` items of ``history`` (U, H) (item rows, left-padded with -1; age 0 the latest).

    Not normalised: a cosine ranking per user is unchanged by the user's scale.
    """
    recent = history[:, -RECENT:]
    weight = (DECAY ** np.arange(recent.shape[1])[::-1])[None, :] * (recent >= 0)
    return np.einsum("uh,uhd->ud", weight.astype(np.float32), unit[np.maximum(recent, 0)])


def content_knn_ranks(embeddings: np.ndarray, history: np.ndarray, targets: np.ndarray,
                      device: str | torch.device = "cpu") -> np.ndarray:
    """1-based rank (U,) of each target among all M items by cosine to the user's recent items.

    Parameters
    ----------
    embeddings : ndarray float (M, D), the item vectors
    history : ndarray int (U, H), item rows, left-padded with -1 (the latest last)
    targets : ndarray int (U,)
    device : where the (U x M) cosines are computed: numpy on the CPU, :data:`USER_CHUNK` users at a time;
        otherwise torch on that device, :data:`DEVICE_BLOCK_BYTES` of cosines at a time. Both are float32
        products (no TensorFloat-32); they may differ in the last bits, and so rank near-ties differently.
    """
    unit = unit_rows(embeddings)
    query = recent_query(unit, history)
    device = torch.device(device)
    if device.type == "cpu":
        return _ranks(query, unit, targets, USER_CHUNK, np.arange)
    chunk = max(1, DEVICE_BLOCK_BYTES // (4 * max(1, unit.shape[0])))
    with cuda_tf32(False):  # float32 products, as numpy's
        return _ranks(*(torch.as_tensor(a, device=device) for a in (query, unit, targets)), chunk,
                      functools.partial(torch.arange, device=device))


def _ranks(query, unit, targets, chunk: int, arange: Callable):
    """The ranks of :func:`content_knn_ranks` from query (U, E), unit (M, E) and targets (U,): numpy arrays, or
    tensors on one device (``arange``: that kind's), ``chunk`` users at a time; a numpy array (U,) int64."""
    rows, rank = arange(unit.shape[0]), []
    for start in range(0, len(targets), chunk):
        part = slice(start, start + chunk)
        scores = query[part] @ unit.T  # (chunk, M)
        own = scores[arange(len(scores)), targets[part]][:, None]
        ahead = (scores > own) | ((scores == own) & (rows[None, :] < targets[part][:, None]))
        found = ahead.sum(1) + 1
        rank.append(as_numpy(found))
    return np.concatenate(rank).astype(np.int64) if rank else np.empty(0, dtype=np.int64)
