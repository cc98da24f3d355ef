"""Tokenizer quality metrics, as pure functions of embeddings and code tables.

Definitions (DESIGN.md):
- rmse = sqrt(mean_i |x_i − x̂_i|²); relative_mse = Σ|x − x̂|² / Σ|x − mean(x)|²
- utilization_l = distinct codes at level l / K_l
- prefix_utilization_l = distinct length-l prefixes / min(N, Π_{t≤l} K_t)
- collision_rate = 1 − distinct full IDs / N
- icr = full IDs held by exactly one item / distinct full IDs
- collided_items = share of items whose full ID another item also holds;
  largest_collision = the most items holding one full ID (1: no collision)
- gini_l = Gini coefficient of item counts over the used length-l prefixes
- perplexity_l = exp(entropy of the level-l code distribution)
"""

from __future__ import annotations

import math

import numpy as np

REPORT_KEYS = (
    "rmse", "relative_mse", "utilization", "prefix_utilization", "collision_rate",
    "icr", "gini", "perplexity", "n_items", "levels", "codebook_size", "collided_items", "largest_collision",
)


def _squared_errors(X: np.ndarray, X_hat: np.ndarray, chunk: int = 65536) -> tuple[float, float]:
    """Σ|x − x̂|² and Σ|x − mean(x)|², in float64, chunk by chunk."""
    mean = np.asarray(X, dtype=np.float64).mean(0) if len(X) <= chunk else _chunked_mean(X, chunk)
    err = tot = 0.0
    for s in range(0, len(X), chunk):
        x = np.asarray(X[s : s + chunk], dtype=np.float64)
        err += float(((x - np.asarray(X_hat[s : s + chunk], dtype=np.float64)) ** 2).sum())
        tot += float(((x - mean) ** 2).sum())
    return err, tot


def _chunked_mean(X: np.ndarray, chunk: int) -> np.ndarray:
    total = sum(np.asarray(X[s : s + chunk], dtype=np.float64).sum(0) for s in range(0, len(X), chunk))
    return total / len(X)


def rmse(X: np.ndarray, X_hat: np.ndarray) -> float:
    """Root of the mean per-item squared Euclidean error; X, X_hat (N, D)."""
    return math.sqrt(_squared_errors(X, X_hat)[0] / len(X))


def relative_mse(X: np.ndarray, X_hat: np.ndarray) -> float:
    """Squared error over the total variance Σ|x − mean(x)|²; X, X_hat (N, D)."""
    err, tot = _squared_errors(X, X_hat)
    return err / tot if tot > 0 else (0.0 if err == 0 else math.inf)


def _prefix_counts(codes: np.ndarray, length: int) -> np.ndarray:
    """Item count of each distinct length-``length`` prefix."""
    return np.unique(codes[:, :length], axis=0, return_counts=True)[1]


def utilization(codes: np.ndarray, codebook_sizes: list[int]) -> list[float]:
    """Share of each level's K codes that some item uses; codes (N, L)."""
    return [len(np.unique(codes[:, l])) / k for l, k in enumerate(codebook_sizes)]


def prefix_utilization(codes: np.ndarray, codebook_sizes: list[int]) -> list[float]:
    """Distinct length-l prefixes over min(N, Π_{t≤l} K_t), for l = 1..L."""
    n = len(codes)
    return [
        len(_prefix_counts(codes, l + 1)) / min(n, math.prod(codebook_sizes[: l + 1]))
        for l in range(codes.shape[1])
    ]


def collision_rate(codes: np.ndarray) -> float:
    """1 − distinct full IDs / N."""
    return 1.0 - len(_prefix_counts(codes, codes.shape[1])) / len(codes)


def icr(codes: np.ndarray) -> float:
    """Full IDs held by exactly one item over distinct full IDs."""
    counts = _prefix_counts(codes, codes.shape[1])
    return float((counts == 1).sum() / len(counts))


def collided_items(codes: np.ndarray) -> float:
    """Share of the N items whose full ID (row of codes (N, L)) another item also holds."""
    _, group, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return float((counts[group.reshape(-1)] > 1).mean())


def vector_groups(X: np.ndarray) -> np.ndarray:
    """(N,) int: one number per distinct row of X (N, D), equal exactly where two rows are byte-for-byte equal."""
    rows = np.ascontiguousarray(X)
    keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).reshape(-1)
    return np.unique(keys, return_inverse=True)[1].reshape(-1)


def shared_vectors(X: np.ndarray) -> float:
    """Share of the N items whose vector (row of X (N, D)) another item also has: exact duplicates."""
    groups = vector_groups(X)
    return float((np.bincount(groups)[groups] > 1).mean())


def merged_items(codes: np.ndarray, X: np.ndarray) -> float:
    """Share of the N items whose full ID another item holds with a different vector (row of X (N, D)).

    The part of :func:`collided_items` that more levels or codes could split: items sharing a full ID only
    with exact duplicates of their own vector are not counted."""
    _, ids = np.unique(np.asarray(codes), axis=0, return_inverse=True)
    ids = ids.reshape(-1)
    pairs = np.unique(np.stack([ids, vector_groups(X)], axis=1), axis=0)  # (full ID, distinct vector) pairs
    return float((np.bincount(pairs[:, 0], minlength=ids.max() + 1)[ids] > 1).mean())


def largest_collision(codes: np.ndarray) -> int:
    """The most items (N, L codes) that hold one full ID: 1 when every full ID is distinct."""
    return int(_prefix_counts(codes, codes.shape[1]).max())


def gini_coefficient(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts: 0 when all equal, → 1 when one holds all."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n = len(x)
    if n == 0 or x.sum() == 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float(2.0 * (ranks * x).sum() / (n * x.sum()) - (n + 1) / n)


def gini(codes: np.ndarray) -> list[float]:
    """Gini coefficient of item counts over the used length-l prefixes, l = 1..L."""
    return [gini_coefficient(_prefix_counts(codes, l + 1)) for l in range(codes.shape[1])]


def perplexity(codes: np.ndarray) -> list[float]:
    """exp(entropy, in nats) of each level's code distribution."""
    out = []
    for l in range(codes.shape[1]):
        p = np.unique(codes[:, l], return_counts=True)[1] / len(codes)
        out.append(float(np.exp(-(p * np.log(p)).sum())))
    return out


def report(
    codes: np.ndarray,
    codebook_sizes: list[int],
    X: np.ndarray | None = None,
    X_hat: np.ndarray | None = None,
) -> dict:
    """All metrics as one dict with the keys of :data:`REPORT_KEYS`.

    ``rmse`` and ``relative_mse`` are None unless both X and its reconstruction
    X_hat (N, D) are given (a codes table alone does not determine them).
    """
    codes = np.asarray(codes, dtype=np.int64)
    have_recon = X is not None and X_hat is not None
    if have_recon:
        err, tot = _squared_errors(X, X_hat)
    return {
        "rmse": math.sqrt(err / len(X)) if have_recon else None,
        "relative_mse": (err / tot if tot > 0 else 0.0) if have_recon else None,
        "utilization": utilization(codes, codebook_sizes),
        "prefix_utilization": prefix_utilization(codes, codebook_sizes),
        "collision_rate": collision_rate(codes),
        "icr": icr(codes),
        "gini": gini(codes),
        "perplexity": perplexity(codes),
        "n_items": int(len(codes)),
        "levels": int(codes.shape[1]),
        "codebook_size": [int(k) for k in codebook_sizes],
        "collided_items": collided_items(codes),
        "largest_collision": largest_collision(codes),
    }


def semantic_purity(
    codes: np.ndarray, labels: np.ndarray, length: int | None, n_pairs: int = 50_000, seed: int = 0
) -> float:
    """Share of item pairs that have a label (e.g. a genre) in common.

    Pairs are drawn uniformly among the pairs of distinct items that share their
    length-``length`` code prefix; ``length=None`` draws uniformly among all pairs
    (the chance level to compare with).

    Parameters
    ----------
    codes : (N, L) int
    labels : (N, G) bool, multi-hot labels per item
    length : int or None
    n_pairs : int, pairs sampled (the estimate's standard error is at most 0.5/sqrt(n_pairs))
    seed : int

    Returns
    -------
    float in [0, 1], or NaN when no two items share a prefix.
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels, dtype=bool)
    if length is None:
        first = rng.integers(0, len(codes), n_pairs)
        second = (first + rng.integers(1, len(codes), n_pairs)) % len(codes)
    else:
        pairs = _same_prefix_pairs(np.asarray(codes)[:, :length], n_pairs, rng)
        if pairs is None:
            return float("nan")
        first, second = pairs
    return float((labels[first] & labels[second]).any(1).mean())


def _same_prefix_pairs(prefix: np.ndarray, n_pairs: int, rng: np.random.Generator):
    _, group = np.unique(prefix, axis=0, return_inverse=True)
    group = group.reshape(-1)
    order = np.argsort(group, kind="stable")
    sizes = np.bincount(group).astype(np.float64)
    weights = sizes * (sizes - 1) / 2
    if weights.sum() == 0:
        return None
    starts = np.r_[0, np.cumsum(sizes)[:-1]].astype(np.int64)
    chosen = rng.choice(len(sizes), n_pairs, p=weights / weights.sum())
    m = sizes[chosen].astype(np.int64)
    a = rng.integers(0, m)
    b = (a + rng.integers(1, m)) % m
    return order[starts[chosen] + a], order[starts[chosen] + b]
