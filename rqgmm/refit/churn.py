"""Churn between two code tables of the same items: how much of a refit's change is renumbering.

Two tables of the same N items (old and new codes, (N, L) each) are compared in
two ways:

- churn: the share of items whose full ID changed, and whose code changed at
  each level. Renumbering alone (a permutation of a level's codes) counts as
  change here.
- agreement: the adjusted Rand index (scikit-learn's) between the partitions of
  the items by their length-l prefixes, l = 1..L. It does not see renumbering,
  so a low churn needs both a high ARI and a good numbering; a high churn with a
  high ARI is change that renumbering (:mod:`rqgmm.refit.align`) can undo.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import adjusted_rand_score

from rqgmm.errors import InputError
from rqgmm.files.itemjoin import positions


def prefix_labels(codes: np.ndarray, length: int) -> np.ndarray:
    """One integer label (N,) per distinct length-``length`` prefix of codes (N, L)."""
    return np.unique(codes[:, :length], axis=0, return_inverse=True)[1].reshape(-1)


def churn(old: np.ndarray, new: np.ndarray) -> dict:
    """Churn and partition agreement of ``new`` codes against ``old`` ones.

    Parameters
    ----------
    old, new : array-like (N, L) int
        Codes of the same N items, row for row.

    Returns
    -------
    dict (JSON-able, no NaN)
        ``n_items``; ``full_id_changed`` (share of items whose L codes are not all
        equal); ``code_changed`` (L,) share of items whose level-l code changed;
        ``adjusted_rand`` (L,) ARI between the length-l prefix partitions (1.0
        for identical partitions; for N < 2 every value is 1.0).
    """
    old, new = np.asarray(old, dtype=np.int64), np.asarray(new, dtype=np.int64)
    if old.ndim != 2 or old.shape != new.shape:
        raise InputError(f"churn compares two code tables of one shape (N, L); got {old.shape} and {new.shape}")
    n, levels = old.shape
    if n == 0:
        raise InputError("churn needs at least one item in both code tables")
    changed = old != new
    return {
        "n_items": int(n),
        "full_id_changed": float(changed.any(1).mean()),
        "code_changed": [float(v) for v in changed.mean(0)],
        "adjusted_rand": [float(adjusted_rand_score(prefix_labels(old, l + 1), prefix_labels(new, l + 1)))
                          for l in range(levels)],
    }


def common_items(old_ids: np.ndarray | None, new_ids: np.ndarray | None, n_old: int,
                 n_new: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (M,), (M,) of the items two tables share, in the new table's order.

    By ``item_id`` when both tables have ids (each table's ids distinct, as
    :func:`rqgmm.ids.codes.read_codes` checks); otherwise row for row, which needs
    equal lengths.
    """
    if old_ids is None or new_ids is None:
        if n_old != n_new:
            raise InputError(f"the code tables have {n_new} and {n_old} rows and no item ids to match them by; "
                             "write both with item ids (encode a .parquet) or encode the same items")
        return np.arange(n_new), np.arange(n_old)
    found, position = positions(np.asarray(new_ids), np.asarray(old_ids))
    if not found.any():
        raise InputError("the two code tables share no item_id; compare codes of the same items")
    return np.flatnonzero(found).astype(np.int64), position[found]
