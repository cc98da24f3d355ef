"""Mixed-radix keys: one int64 per row of tokens (codes, or codes and suffix), in lexicographic order.

A row ``(z_1, .., z_T)`` with ``z_t`` in ``[0, V_t)`` gets ``Σ z_t · Π_{s>t} V_s``:
rows compare as their keys do, so sorting, grouping and joining rows is done on
one int64 column. The sizes must multiply to less than 2**62.
"""

from __future__ import annotations

import numpy as np

from rqgmm.errors import InputError

MAX_KEY_SPACE = 2.0**62


def key_strides(sizes: list[int]) -> np.ndarray:
    """Strides (T,) int64 of the key of rows whose token t lies in [0, sizes[t])."""
    if np.prod([float(k) for k in sizes]) >= MAX_KEY_SPACE:
        raise InputError(f"vocabulary sizes {list(sizes)} give more than 2**62 distinct IDs, more than a store "
                         "indexes; use fewer levels or smaller codebooks")
    return np.cumprod([1, *list(sizes)[::-1]])[:-1][::-1].astype(np.int64)


def row_keys(rows: np.ndarray, sizes: list[int]) -> np.ndarray:
    """One int64 key (N,) per row of tokens (N, T) (column by column: numpy has no integer BLAS)."""
    rows = np.asarray(rows)
    keys = np.zeros(len(rows), dtype=np.int64)
    for t, stride in enumerate(key_strides(sizes).tolist()):
        keys += rows[:, t].astype(np.int64) * stride
    return keys


def rows_of_keys(keys: np.ndarray, sizes: list[int]) -> np.ndarray:
    """Rows of tokens (N, T) of keys (N,): the inverse of :func:`row_keys`."""
    keys = np.asarray(keys, dtype=np.int64)
    out = np.empty((len(keys), len(sizes)), dtype=np.int64)
    for t, (stride, size) in enumerate(zip(key_strides(sizes).tolist(), sizes)):
        out[:, t] = (keys // stride) % size
    return out


def sorted_distinct(keys: np.ndarray) -> np.ndarray:
    """The distinct values of ``keys`` (N,), sorted (a sort and one comparison: no hashing)."""
    keys = np.sort(keys)
    return keys[np.r_[True, keys[1:] != keys[:-1]]] if len(keys) else keys
