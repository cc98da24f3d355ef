"""Semantic IDs as tokens: unique-ID suffixes and per-level offsets."""

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


def level_offsets(codebook_sizes: list[int]) -> np.ndarray:
    """Offset (L,) of each level in one shared vocabulary of Σ K_l tokens."""
    return np.concatenate([[0], np.cumsum(codebook_sizes)[:-1]]).astype(np.int64)


def flat_tokens(codes: np.ndarray, codebook_sizes: list[int]) -> np.ndarray:
    """Codes (N, L) shifted into one vocabulary: token = code + offset of its level."""
    return np.asarray(codes, dtype=np.int64) + level_offsets(codebook_sizes)[: np.shape(codes)[1]]
