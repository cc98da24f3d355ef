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
from collections.abc import Callable

import numpy as np

from rqgmm.ids.keys import MAX_KEY_SPACE, row_keys

REPORT_KEYS = (
    "rmse", "relative_mse", "utilization", "prefix_utilization", "collision_rate",
    "icr", "gini", "perplexity", "n_items", "levels", "codebook_size", "collided_items", "largest_collision",
)


def _squared_errors(X: np.ndarray, X_hat: np.ndarray, chunk: int = 65536) -> tuple[float, float]:
    """Σ|x − x̂|² and Σ|x − mean(x)|², in float64, chunk by chunk."""
    err = squared_errors_by_depth(X, lambda rows, _: X_hat[rows], [0], chunk)[0]
    return err, total_squares(X, chunk)


def squared_errors_by_depth(X: np.ndarray, reconstruct: Callable[[slice, int], np.ndarray], depths: list[int],
                            chunk: int = 65536) -> dict[int, float]:
    """Σ|x − x̂_d|² in float64 for each depth d of ``depths``, in one pass over X (N, D), chunk by chunk.

    ``reconstruct(rows, d)`` gives x̂_d of X[rows] (a slice), (n, D): e.g. a decode of the first d levels of
    those rows' codes, so no reconstruction (N, D) is ever held whole."""
    errors = dict.fromkeys(depths, 0.0)
    for s in range(0, len(X), chunk):
        rows = slice(s, s + chunk)
        x = np.asarray(X[rows], dtype=np.float64)
        for depth in depths:
            errors[depth] += _sum_of_squares(x, reconstruct(rows, depth))
    return errors


def _sum_of_squares(x: np.ndarray, y: np.ndarray) -> float:
    """Σ(x − y)² of float64 rows x (n, D) and rows y (n, D), in one float64 temporary (what
    ``((x - y.astype(float64)) ** 2).sum()`` gives, bit for bit)."""
    diff = np.subtract(x, np.asarray(y), dtype=np.float64)
    return float(np.square(diff, out=diff).sum())


def total_squares(X: np.ndarray, chunk: int = 65536) -> float:
    """Σ|x − mean(x)|² over the rows of X (N, D), in float64, chunk by chunk."""
    mean = np.asarray(X, dtype=np.float64).mean(0) if len(X) <= chunk else _chunked_mean(X, chunk)
    return sum(_sum_of_squares(np.asarray(X[s : s + chunk], dtype=np.float64), mean) for s in range(0, len(X), chunk))


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
    """Item count of each distinct length-``length`` prefix (in the order of the prefixes)."""
    return prefix_counts(codes, [length])[0]


def prefix_counts(codes: np.ndarray, lengths: list[int] | None = None) -> list[np.ndarray]:
    """Item counts of the distinct length-l prefixes of codes (N, L), for each l of ``lengths`` (default 1..L).

    One sort of one int64 key per row (:mod:`rqgmm.ids.keys`): a length-l prefix is the key divided by the
    strides of the levels after l, so every length reads the same sorted keys. Codes whose key would not fit
    an int64 (or negative codes) fall back on ``np.unique`` over rows; both list the prefixes in lexicographic
    order."""
    codes = np.asarray(codes)
    lengths = list(range(1, codes.shape[1] + 1)) if lengths is None else list(lengths)
    keys = _sorted_keys(codes)
    if keys is None:
        return [np.unique(codes[:, :l], axis=0, return_counts=True)[1] for l in lengths]
    sizes = _key_sizes(codes)
    return [_run_lengths(keys // math.prod(sizes[l:])) for l in lengths]


def prefix_groups(codes: np.ndarray, lengths: list[int] | None = None) -> list[np.ndarray]:
    """Each row's number among the distinct length-l prefixes of codes (N, L), (N,) int64 for each l of
    ``lengths`` (default 1..L), numbered in lexicographic order (``np.unique(codes[:, :l], axis=0,
    return_inverse=True)``'s numbers). One int64 key per row, divided for each length (a 1-D unique each),
    where the codes allow it, else that row-wise unique."""
    codes = np.asarray(codes)
    lengths = list(range(1, codes.shape[1] + 1)) if lengths is None else list(lengths)
    keys = _keys(codes)
    if keys is None:
        return [np.unique(codes[:, :l], axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)
                for l in lengths]
    sizes = _key_sizes(codes)
    return [np.unique(keys // math.prod(sizes[l:]), return_inverse=True)[1].reshape(-1).astype(np.int64)
            for l in lengths]


def _key_sizes(codes: np.ndarray) -> list[int]:
    return [int(v) + 1 for v in codes.max(0)] if len(codes) else [1] * codes.shape[1]


def _keys(codes: np.ndarray) -> np.ndarray | None:
    """The rows' mixed-radix keys (N,) int64; None when they would not fit (or a code is negative)."""
    if len(codes) and int(codes.min()) < 0:
        return None
    sizes = _key_sizes(codes)
    return None if math.prod(sizes) >= MAX_KEY_SPACE else row_keys(codes, sizes)


def _sorted_keys(codes: np.ndarray) -> np.ndarray | None:
    """The rows' mixed-radix keys (N,), sorted; None when they would not fit (or a code is negative)."""
    keys = _keys(codes)
    if keys is not None:
        keys.sort()
    return keys


def _run_lengths(ordered: np.ndarray) -> np.ndarray:
    """Lengths of the runs of equal values of a sorted array (N,)."""
    if not len(ordered):
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    return np.diff(np.r_[starts, len(ordered)])


def _level_counts(codes: np.ndarray, level: int) -> np.ndarray:
    """Item count of each code used at ``level`` (0-based), in code order (``np.unique``'s counts)."""
    column = np.asarray(codes)[:, level]
    if len(column) and int(column.min()) >= 0:
        counts = np.bincount(column)
        return counts[counts > 0]
    return np.unique(column, return_counts=True)[1]


def utilization(codes: np.ndarray, codebook_sizes: list[int]) -> list[float]:
    """Share of each level's K codes that some item uses; codes (N, L)."""
    return [len(_level_counts(codes, l)) / k for l, k in enumerate(codebook_sizes)]


def prefix_utilization(codes: np.ndarray, codebook_sizes: list[int],
                       counts: list[np.ndarray] | None = None) -> list[float]:
    """Distinct length-l prefixes over min(N, Π_{t≤l} K_t), for l = 1..L (``counts``: :func:`prefix_counts`)."""
    n, counts = len(codes), prefix_counts(codes) if counts is None else counts
    return [len(counts[l]) / min(n, math.prod(codebook_sizes[: l + 1])) for l in range(codes.shape[1])]


def collision_rate(codes: np.ndarray) -> float:
    """1 − distinct full IDs / N."""
    return 1.0 - len(_prefix_counts(codes, codes.shape[1])) / len(codes)


def icr(codes: np.ndarray) -> float:
    """Full IDs held by exactly one item over distinct full IDs."""
    return _icr(_prefix_counts(codes, codes.shape[1]))


def _icr(counts: np.ndarray) -> float:
    return float((counts == 1).sum() / len(counts))


def collided_items(codes: np.ndarray) -> float:
    """Share of the N items whose full ID (row of codes (N, L)) another item also holds."""
    return _collided(_prefix_counts(codes, codes.shape[1]))


def _collided(counts: np.ndarray) -> float:
    """Share of the items in groups of more than one, from the group sizes."""
    return float(counts[counts > 1].sum() / counts.sum()) if len(counts) else 0.0


def vector_groups(X: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """(N,) int: one number per distinct row of X (N, D), equal exactly where two rows are byte-for-byte equal.

    Each row's bytes are hashed to one int64 (a sum of its 8-byte words times odd constants, chunk by chunk);
    rows with distinct hashes differ, and only the rows whose hash repeats are compared byte for byte. No
    copy of X is made (a sort of X's rows as bytes held two)."""
    if not len(X):
        return np.zeros(0, dtype=np.int64)
    hashes = _row_hashes(X, chunk)
    order = np.argsort(hashes, kind="stable")
    ordered = hashes[order]
    repeated = np.r_[False, ordered[1:] == ordered[:-1]] | np.r_[ordered[:-1] == ordered[1:], False]
    groups = np.empty(len(X), dtype=np.int64)
    groups[order[~repeated]] = np.arange(int((~repeated).sum()))
    if repeated.any():
        rows = np.sort(order[repeated])
        groups[rows] = int((~repeated).sum()) + _byte_groups(np.asarray(X[rows]))
    return groups


def _row_hashes(X: np.ndarray, chunk: int) -> np.ndarray:
    """One int64 (N,) per row of X (N, D): Σ_j word_j · m_j (mod 2**64) over the row's 8-byte words."""
    width = X.shape[1] * X.dtype.itemsize
    words = -(-width // 8)
    multipliers = np.random.default_rng(0x5EED).integers(0, 2**63, words, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    out = np.empty(len(X), dtype=np.uint64)
    for lo in range(0, len(X), chunk):
        raw = np.ascontiguousarray(X[lo : lo + chunk]).view(np.uint8).reshape(-1, width)
        if width % 8:
            raw = np.pad(raw, ((0, 0), (0, 8 * words - width)))
        out[lo : lo + chunk] = (raw.view(np.uint64) * multipliers).sum(1, dtype=np.uint64)
    return out.view(np.int64)


def _byte_groups(rows: np.ndarray) -> np.ndarray:
    rows = np.ascontiguousarray(rows)
    keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).reshape(-1)
    return np.unique(keys, return_inverse=True)[1].reshape(-1)


def shared_vectors(X: np.ndarray, groups: np.ndarray | None = None) -> float:
    """Share of the N items whose vector (row of X (N, D)) another item also has: exact duplicates.

    ``groups``: :func:`vector_groups` of X, when already known."""
    groups = vector_groups(X) if groups is None else groups
    return float((np.bincount(groups)[groups] > 1).mean())


def merged_items(codes: np.ndarray, X: np.ndarray, groups: np.ndarray | None = None,
                 full_counts: np.ndarray | None = None) -> float:
    """Share of the N items whose full ID another item holds with a different vector (row of X (N, D)).

    The part of :func:`collided_items` that more levels or codes could split: items sharing a full ID only
    with exact duplicates of their own vector are not counted. ``groups``: :func:`vector_groups` of X, when
    already known; ``full_counts``: the item counts of the distinct full IDs (:func:`prefix_counts`' last),
    when already known."""
    groups = vector_groups(X) if groups is None else groups
    if not len(groups):
        return 0.0
    stride = int(groups.max()) + 1
    if stride == len(groups):  # every vector distinct: every collision merges distinct vectors
        return collided_items(np.asarray(codes)) if full_counts is None else _collided(full_counts)
    ids = _full_ids(np.asarray(codes))
    pair_ids = np.unique(ids * stride + groups) // stride  # the full ID of each distinct (full ID, vector) pair
    return float((np.bincount(pair_ids, minlength=int(ids.max()) + 1)[ids] > 1).mean())


def _full_ids(codes: np.ndarray) -> np.ndarray:
    """(N,) int64: one number per distinct full ID (row of codes (N, L)), dense in [0, distinct)."""
    keys = _keys(codes) if len(codes) else None
    if keys is None:
        return np.unique(codes, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)
    return np.unique(keys, return_inverse=True)[1].reshape(-1).astype(np.int64)


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


def gini(codes: np.ndarray, counts: list[np.ndarray] | None = None) -> list[float]:
    """Gini coefficient of item counts over the used length-l prefixes, l = 1..L (``counts``: :func:`prefix_counts`)."""
    counts = prefix_counts(codes) if counts is None else counts
    return [gini_coefficient(c) for c in counts]


def perplexity(codes: np.ndarray) -> list[float]:
    """exp(entropy, in nats) of each level's code distribution."""
    out = []
    for l in range(codes.shape[1]):
        p = _level_counts(codes, l) / len(codes)
        out.append(float(np.exp(-(p * np.log(p)).sum())))
    return out


def report(
    codes: np.ndarray,
    codebook_sizes: list[int],
    X: np.ndarray | None = None,
    X_hat: np.ndarray | None = None,
    *,
    squared_errors: tuple[float, float] | None = None,
    counts: list[np.ndarray] | None = None,
) -> dict:
    """All metrics as one dict with the keys of :data:`REPORT_KEYS`.

    ``rmse`` and ``relative_mse`` are None unless both X and its reconstruction
    X_hat (N, D) are given, or ``squared_errors`` (Σ|x − x̂|², Σ|x − mean(x)|²)
    computed apart (a codes table alone does not determine them). ``counts``:
    :func:`prefix_counts` of codes for lengths 1..L, when already known (a deeper
    table's first L lengths are this table's: a sweep sorts its keys once).
    """
    codes = np.asarray(codes, dtype=np.int64)
    if squared_errors is None and X is not None and X_hat is not None:
        squared_errors = _squared_errors(X, X_hat)
    err, tot = squared_errors if squared_errors is not None else (None, None)
    counts = prefix_counts(codes) if counts is None else counts
    return {
        "rmse": math.sqrt(err / len(codes)) if err is not None else None,
        "relative_mse": (err / tot if tot > 0 else 0.0) if err is not None else None,
        "utilization": utilization(codes, codebook_sizes),
        "prefix_utilization": prefix_utilization(codes, codebook_sizes, counts),
        "collision_rate": 1.0 - len(counts[-1]) / len(codes),
        "icr": _icr(counts[-1]),
        "gini": gini(codes, counts),
        "perplexity": perplexity(codes),
        "n_items": int(len(codes)),
        "levels": int(codes.shape[1]),
        "codebook_size": [int(k) for k in codebook_sizes],
        "collided_items": _collided(counts[-1]),
        "largest_collision": int(counts[-1].max()),
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
