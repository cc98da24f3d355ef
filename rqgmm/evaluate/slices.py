"""Popularity slices of test rows: cold, tail, torso, head by the item's training interactions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rqgmm.runtime.counting import bincount

SLICES = ("cold", "tail", "torso", "head")
QUANTILES = (0.5, 0.9)
#: A slice with fewer test rows (or one label value) gets no AUC.
MIN_SLICE_ROWS = 20


def popularity_slices(train_items, test_items) -> np.ndarray:
    """The slice of each test row's item, shape (N_test,) str (:func:`slice_codes` as names)."""
    return np.asarray(SLICES)[slice_codes(train_items, test_items)]


def slice_codes(train_items, test_items) -> np.ndarray:
    """The slice of each test row's item as its index in :data:`SLICES`, shape (N_test,) int8 (1 byte a row:
    no string per row, so ``pd.Categorical.from_codes(codes, SLICES)`` costs nothing more).

    cold: no training interaction; then, among items seen in training, tail up
    to the 50% quantile of training popularity, torso up to the 90% quantile,
    head above it.

    Parameters
    ----------
    train_items : array-like, shape (N_train,)
        The item of every training row (ids compared as strings; non-negative
        integer indices, as an encoded log gives, are counted directly).
    test_items : array-like, shape (N_test,)
    """
    train_items, test_items = np.asarray(train_items), np.asarray(test_items)
    if np.issubdtype(train_items.dtype, np.integer) and np.issubdtype(test_items.dtype, np.integer):
        # item indices (an encoded log): counted without a string per row
        table = bincount(train_items, minlength=int(test_items.max(initial=0)) + 1)
        counts = pd.Series(table[table > 0])
        popularity = np.take(table, test_items, mode="clip") * (test_items < len(table))
    else:
        counts = pd.Series(train_items.astype(str)).value_counts()
        popularity = counts.reindex(test_items.astype(str)).fillna(0).to_numpy()
    low, high = np.quantile(counts.to_numpy(), QUANTILES) if len(counts) else (0.0, 0.0)
    codes = np.full(len(popularity), SLICES.index("head"), np.int8)  # the first rule that holds wins, as np.select
    codes[popularity <= high] = SLICES.index("torso")
    codes[popularity <= low] = SLICES.index("tail")
    codes[popularity == 0] = SLICES.index("cold")
    return codes
