"""The full codes nearest to an embedding by the model's own distance: a beam over the levels.

The distance is the squared reconstruction error ``|x − decode(codes)|²`` that
every reconstructing tokenizer shares (RQ-GMM's codewords are its components'
means, RQ-KMeans' its centroids, the VAEs' their decoder). Level by level, each
of the ``beam`` best partial codes is extended by every code of the next level
and the ``beam`` best partial reconstructions are kept; the last level keeps
all ``beam · K_L`` extensions, sorted. It is the standard beam search of
residual quantisation, written on ``decode`` alone so that any method serves.
"""

from __future__ import annotations

import numpy as np

from rqgmm.errors import InputError
from rqgmm.runtime.validation import as_numpy

DECODE_BLOCK = 1 << 22  # floats of candidate reconstructions per block


def reconstruction_cost(model, X: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``|x_i − decode(codes_i)|²`` (n,) float64 for X (n, D) and codes (n, l)."""
    _check_reconstructs(model)
    out = np.empty(len(codes), dtype=np.float64)
    rows = max(1, DECODE_BLOCK // max(1, model.n_features_in_))
    for start in range(0, len(codes), rows):
        x_hat = as_numpy(model.decode(codes[start : start + rows])).astype(np.float64)
        out[start : start + rows] = ((np.asarray(X[start : start + rows], dtype=np.float64) - x_hat) ** 2).sum(1)
    return out


def nearest_codes(model, X: np.ndarray, beam: int) -> tuple[np.ndarray, np.ndarray]:
    """Candidate full codes of each row of X, nearest first.

    Parameters
    ----------
    model : a fitted tokenizer whose ``decode`` reconstructs its input.
    X : (n, D) float
    beam : partial codes kept per level.

    Returns
    -------
    codes : (n, M, L) int64, M = min(beam, Π_{l<L} K_l) · K_L
    cost : (n, M) float64, ascending along each row
    """
    _check_reconstructs(model)
    sizes = list(model.effective_codebook_sizes)
    width = min(beam, int(np.prod(sizes[:-1]))) * sizes[-1]
    rows = max(1, DECODE_BLOCK // (width * max(1, model.n_features_in_)))
    codes = np.empty((len(X), width, len(sizes)), dtype=np.int64)
    cost = np.empty((len(X), width), dtype=np.float64)
    for start in range(0, len(X), rows):
        block = slice(start, start + rows)
        codes[block], cost[block] = _beam(model, np.asarray(X[block], dtype=np.float64), sizes, beam)
    return codes, cost


def _beam(model, x: np.ndarray, sizes: list[int], beam: int) -> tuple[np.ndarray, np.ndarray]:
    """Beam search for the rows x (b, D): codes (b, M, L) and costs (b, M), nearest first."""
    b = len(x)
    partial = np.zeros((b, 1, 0), dtype=np.int64)
    for level, k in enumerate(sizes):
        width = partial.shape[1] * k
        candidates = np.concatenate([np.repeat(partial, k, axis=1),
                                     np.tile(np.arange(k), partial.shape[1])[None, :, None].repeat(b, 0)], axis=2)
        x_hat = as_numpy(model.decode(candidates.reshape(b * width, level + 1))).astype(np.float64)
        cost = ((x[:, None, :] - x_hat.reshape(b, width, -1)) ** 2).sum(-1)
        keep = width if level == len(sizes) - 1 else min(beam, width)
        order = np.argsort(cost, axis=1, kind="stable")[:, :keep]
        partial, cost = np.take_along_axis(candidates, order[:, :, None], 1), np.take_along_axis(cost, order, 1)
    return partial, cost


def _check_reconstructs(model) -> None:
    if not model.reconstructs:
        raise InputError(f"a {model.method} model does not reconstruct its input, so it has no distance to find "
                         "the nearest prefix with room; drop --max-per-prefix or publish with another method")

