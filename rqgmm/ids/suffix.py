"""Collision handling: the suffix that makes every full semantic ID distinct.

Offsets, flat ids and tokens live with the codes table in :mod:`rqgmm.ids.codes`.
"""

from __future__ import annotations

import numpy as np


def unique_suffix(codes: np.ndarray) -> np.ndarray:
    """Suffix (N,) int64 that makes every full ID distinct.

    Items sharing the same L codes are numbered 0, 1, 2, ... in input order, so
    the first item of each group keeps suffix 0 and (codes, suffix) is unique.
    """
    codes = np.asarray(codes, dtype=np.int64)
    _, group = np.unique(codes, axis=0, return_inverse=True)
    group = group.reshape(-1)
    order = np.argsort(group, kind="stable")
    sorted_groups = group[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_groups)) + 1]
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    suffix = np.empty(len(codes), dtype=np.int64)
    suffix[order] = np.arange(len(order)) - run_start
    return suffix
