"""Train / validation / test splits of an interaction table, and cold-start items.

The headline split is by time (:func:`time_split`): the model is trained on the
past and evaluated on the future, as it would be in production, so test items
can be new ("cold"): the items whose content-based semantic IDs matter most.
:func:`random_split` is the usual i.i.d. comparison.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rqgmm.errors import InputError

logger = logging.getLogger(__name__)

DEFAULT_FRACTIONS: tuple[float, float, float] = (0.8, 0.1, 0.1)


@dataclass(repr=False)
class Split:
    """Three disjoint parts of one interaction table.

    Attributes
    ----------
    train, valid, test : pandas.DataFrame, or parts of an encoded log
        Rows of the interaction table (frames with a fresh 0..n-1 index);
        together they hold every row exactly once.
    kind : str
        ``"time"`` or ``"random"``.
    """

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    kind: str

    def __repr__(self) -> str:
        sizes = ", ".join(f"{n}={len(getattr(self, n)):,}" for n in ("train", "valid", "test"))
        return f"Split({self.kind!r}: {sizes})"


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(f) for f in fractions)
    valid = (
        len(values) == 3
        and all(np.isfinite(values))
        and min(values) >= 0
        and values[0] > 0
        and values[2] > 0
        and abs(sum(values) - 1.0) <= 1e-6
    )
    if not valid:
        raise InputError(
            f"fractions must be three numbers (train, valid, test) >= 0 that sum to 1, "
            f"with train > 0 and test > 0; got {tuple(fractions)}"
        )
    return values  # type: ignore[return-value]


def _require_columns(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(
            f"the interaction table lacks the column(s) {missing}; it needs {list(columns)} "
            f"(got {list(frame.columns)})"
        )


def cut_points(n_rows: int, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> tuple[int, int]:
    """Where the train and the validation parts of ``n_rows`` ordered rows end: floor(a·n), floor((a+b)·n)."""
    train, valid, _ = _check_fractions(fractions)
    # The tolerance keeps float noise (0.29 * 100 = 28.999...) from dropping a row.
    first = int(np.floor(n_rows * train + 1e-9))
    return first, max(first, int(np.floor(n_rows * (train + valid) + 1e-9)))


#: Rows sorted at once when the first key is already in order (bounds the sort's buffers).
ORDER_CHUNK = 1 << 20


def time_order(keys: Sequence) -> np.ndarray:
    """The stable order (N,) of rows by ``keys`` (N,) each, most significant first: arrays, or any key that
    slices to an array and converts by ``np.asarray`` (:class:`rqgmm.ctr.log.Gathered`, read a chunk at a time).

    When the first key (time) is already non-decreasing, as a log written in time order is, the rows are
    sorted a run of whole time groups at a time into one int32 array (4 bytes a row instead of the 16 of
    one ``lexsort``: its int64 output and its buffer): a run with no two rows at one time is taken as it
    stands (no sort, no other key read), another by one stable sort of a packed key (:func:`_tied_order`);
    otherwise one ``lexsort`` (int64). Either way the same values: ``np.lexsort(keys[::-1])``.
    """
    keys = list(keys)
    first = np.asarray(keys[0]) if keys else None
    n = len(first) if keys else 0
    keys[:1] = [first] if keys else []
    if n >= 2**31 or not _non_decreasing(first):
        return np.lexsort(tuple(np.asarray(k) for k in reversed(keys)))
    order, start = np.empty(n, np.int32), 0
    while start < n:
        stop = n if start + ORDER_CHUNK >= n else int(np.searchsorted(first, first[start + ORDER_CHUNK - 1],
                                                                       side="right"))
        times = first[start:stop]
        if bool((times[1:] > times[:-1]).all()):  # no two rows at one time: in order already, no key read
            order[start:stop] = np.arange(start, stop, dtype=np.int32)
        else:
            order[start:stop] = _tied_order(times, [np.asarray(k[start:stop]) for k in keys[1:]]) + start
        start = stop
    return order


def _tied_order(times: np.ndarray, rest: list[np.ndarray]) -> np.ndarray:
    """``np.lexsort((*reversed(rest), times))`` for non-decreasing ``times`` (N,): one stable sort of one int64
    key (each row's time group, then each other key in bits of its own) when the other keys are non-negative
    integers that fit beside it, else that lexsort. The keys are nearly in order (only rows of one time can
    move), which a stable sort takes in little more than a pass."""
    widths = [int(k.max()).bit_length() if len(k) and k.dtype.kind in "iu" and int(k.min()) >= 0 else None
              for k in rest]
    groups = np.cumsum(np.r_[False, times[1:] != times[:-1]], dtype=np.int64)
    if None in widths or int(groups[-1]).bit_length() + sum(widths) > 63:
        return np.lexsort((*reversed(rest), times))
    key = groups
    for k, width in zip(rest, widths):
        key <<= width
        key |= k.astype(np.int64, copy=False)
    return np.argsort(key, kind="stable")


def _non_decreasing(values: np.ndarray) -> bool:
    """Whether ``values`` (N,) never decrease, checked a chunk at a time (no (N,) temporary)."""
    windows = (values[i:i + ORDER_CHUNK + 1] for i in range(0, max(len(values) - 1, 0), ORDER_CHUNK))
    return all(bool((w[1:] >= w[:-1]).all()) for w in windows)


def random_order(n_rows: int, seed: int) -> np.ndarray:
    """A permutation (N,) of the rows drawn from ``numpy.random.default_rng(seed)``: the values of
    ``permutation(n_rows)``, shuffled in place as int32 (4 bytes a row) below 2^31 rows."""
    rows = np.arange(n_rows, dtype=np.int32 if n_rows < 2**31 else np.int64)
    np.random.default_rng(seed).shuffle(rows)
    return rows


def _sort_key(values: pd.Series) -> np.ndarray:
    """A column as numbers that sort as its values do (codes of sorted values for strings)."""
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values):
        return values.to_numpy()
    codes = pd.factorize(values, sort=True)[0]
    return np.where(codes < 0, codes.max(initial=0) + 1, codes)  # missing values last, as sort_values puts them


def _split_rows(ordered: pd.DataFrame, fractions: tuple[float, float, float], kind: str) -> Split:
    first, second = cut_points(len(ordered), fractions)
    parts = (ordered.iloc[:first], ordered.iloc[first:second], ordered.iloc[second:])
    split = Split(*(p.reset_index(drop=True) for p in parts), kind=kind)
    logger.info("%r", split)
    return split


def time_split(interactions: pd.DataFrame, fractions: Sequence[float] = DEFAULT_FRACTIONS,
               keys: Sequence[str] = ("timestamp", "user_id", "item_id")) -> Split:
    """Global chronological split: the past trains, the future tests.

    Rule: the rows are sorted by (``timestamp``, ``user_id``, ``item_id``) with a
    stable sort, so equal keys keep their input order. With n rows and fractions
    (a, b, c), the first floor(a·n) rows are train, the next
    floor((a+b)·n) − floor(a·n) rows are valid, and the remaining rows are test.
    (floor is taken with a 1e-9 tolerance so that 0.29·100 counts as 29.)
    The cut is global (not per user), so every train timestamp is <= every valid
    timestamp <= every test timestamp, and users or items that first appear late
    are seen only in valid or test.

    Parameters
    ----------
    interactions : pandas.DataFrame, shape (n, ...)
        Needs ``timestamp``, ``user_id`` and ``item_id`` columns.
    fractions : sequence of 3 floats
        (train, valid, test), each >= 0, summing to 1; train and test > 0.
    keys : sequence of str
        The time, user and item columns (the sort keys, in that order).

    Returns
    -------
    Split
        Each part in chronological order.
    """
    fractions = _check_fractions(fractions)
    _require_columns(interactions, list(keys))
    order = time_order([_sort_key(interactions[k]) for k in keys])
    return _split_rows(interactions.iloc[order], fractions, "time")


def random_split(
    interactions: pd.DataFrame, seed: int, fractions: Sequence[float] = DEFAULT_FRACTIONS
) -> Split:
    """Uniform random split of the rows, with the same sizes as :func:`time_split`.

    The rows are shuffled by a permutation drawn from
    ``numpy.random.default_rng(seed)``, then cut as in :func:`time_split`;
    the same seed and table give the same split.

    Parameters
    ----------
    interactions : pandas.DataFrame, shape (n, ...)
    seed : int
    fractions : sequence of 3 floats
        (train, valid, test), each >= 0, summing to 1; train and test > 0.

    Returns
    -------
    Split
        Each part in shuffled order.
    """
    fractions = _check_fractions(fractions)
    order = random_order(len(interactions), seed)
    return _split_rows(interactions.iloc[order], fractions, "random")


def cold_mask(test_df: pd.DataFrame, train_df: pd.DataFrame) -> np.ndarray:
    """Which rows of ``test_df`` have an item never seen in ``train_df``.

    Parameters
    ----------
    test_df, train_df : pandas.DataFrame
        Need an ``item_id`` column.

    Returns
    -------
    numpy.ndarray of bool, shape (len(test_df),)
    """
    _require_columns(test_df, ["item_id"])
    _require_columns(train_df, ["item_id"])
    return ~test_df["item_id"].isin(train_df["item_id"].unique()).to_numpy()


def cold_items(split: Split) -> np.ndarray:
    """The items of ``split.test`` that never occur in ``split.train``.

    Returns
    -------
    numpy.ndarray of int64, shape (n_cold,)
        Sorted item ids.
    """
    test_items = split.test["item_id"].to_numpy()
    return np.unique(test_items[cold_mask(split.test, split.train)]).astype(np.int64)
