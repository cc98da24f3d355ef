"""Vocabularies fitted on training rows: raw values → indices 1..n; 0 = never seen (OOV / padding)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def as_strings(values) -> np.ndarray:
    """Values as str keys, shape (N,): vocabularies and saved builders compare strings."""
    return np.asarray(values).astype(str)


class Vocabulary:
    """Raw values → indices 1..n in order of first appearance; 0 for values never seen.

    Parameters
    ----------
    values : array-like, shape (N,)
        The values seen in training (compared as strings).
    """

    def __init__(self, values) -> None:
        self.index = pd.Index(pd.unique(as_strings(values)))

    def __len__(self) -> int:
        """Table size, the OOV row 0 included."""
        return len(self.index) + 1

    def lookup(self, values) -> np.ndarray:
        """Indices of ``values``, shape (N,) int64; 0 for values never seen."""
        return self.index.get_indexer(as_strings(values)).astype(np.int64) + 1

    def to_list(self) -> list[str]:
        return self.index.tolist()

    @classmethod
    def from_list(cls, values: list[str]) -> "Vocabulary":
        vocab = cls([])
        vocab.index = pd.Index(np.asarray(values, dtype=str))
        return vocab
