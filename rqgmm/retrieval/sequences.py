"""Per-user item sequences and the leave-one-out split of generative retrieval (as TIGER).

Each user's items (the rows their label marks positive, or every row) in time
order: the last item is the test target, the one before it the validation
target, the rest the training sequence. Users with fewer than
:data:`MIN_ITEMS` items (no positive at all included) are dropped and counted. Items first seen in a test
target stay in the catalogue: they are the cold slice.

**Ties.** Rows of one user with the same timestamp are ordered by a seeded
hash of (user, item) (:func:`tie_order`), never by item id or file order: a
log sorted by item id would otherwise always hold out its largest ids.
Without a time column the rows' order is their time order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from rqgmm.errors import InputError
from rqgmm.runtime.counting import bincount

logger = logging.getLogger(__name__)

#: A user needs a training, a validation and a test item.
MIN_ITEMS = 3
SEQUENCE = ("positives", "all")


@dataclass(frozen=True)
class Sequences:
    """Every kept user's items in time order, split leave-one-out.

    Attributes
    ----------
    items : ndarray int64 (N,)
        Item rows (indices into the item table), user after user, each user's in time order.
    starts : ndarray int64 (U + 1,)
        User u's items are ``items[starts[u]:starts[u + 1]]`` (at least MIN_ITEMS each).
    n_items : int
        M, the catalogue size (items never seen in any sequence included).
    dropped_users : int
        Users of the log with fewer than MIN_ITEMS items in the sequence, those with none (no positive row)
        included: ``n_users + dropped_users`` is the log's number of users.
    """

    items: np.ndarray
    starts: np.ndarray
    n_items: int
    dropped_users: int

    @property
    def n_users(self) -> int:
        return len(self.starts) - 1

    @property
    def test(self) -> np.ndarray:
        """The last item of each user (U,)."""
        return self.items[self.starts[1:] - 1]

    @property
    def valid(self) -> np.ndarray:
        """The item before the last of each user (U,)."""
        return self.items[self.starts[1:] - 2]

    def history(self, user: int, part: str) -> np.ndarray:
        """Items before user's ``part`` target: ``"train"`` (training sequence), ``"valid"`` or ``"test"``."""
        stop = self.starts[user + 1] - {"train": 2, "valid": 2, "test": 1}[part]
        return self.items[self.starts[user]:stop]

    def training_mask(self) -> np.ndarray:
        """ndarray bool (N,): the items that belong to a training sequence (all but each user's last two)."""
        mask = np.ones(len(self.items), dtype=bool)
        mask[self.starts[1:] - 1] = False
        mask[self.starts[1:] - 2] = False
        return mask

    def popularity(self) -> np.ndarray:
        """Training count of each item (M,) int64 (0 for items never in a training sequence: cold)."""
        return bincount(self.items[self.training_mask()], minlength=self.n_items)


#: The seed of the same-timestamp tie order (one split for every seed of a run, so runs pair by user).
TIE_SEED = 0
_GOLDEN, _MIX1, _MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def tie_order(users: np.ndarray, items: np.ndarray, seed: int = TIE_SEED) -> np.ndarray:
    """A seeded hash (N,) uint64 of each (user, item) pair (splitmix64): the order of same-timestamp rows."""
    with np.errstate(over="ignore"):
        x = (np.asarray(users).astype(np.uint64) * _GOLDEN + np.asarray(items).astype(np.uint64)
             + np.uint64(seed) * _MIX2)
        for shift, mix in ((30, _MIX1), (27, _MIX2)):
            x = (x ^ (x >> np.uint64(shift))) * mix
        return x ^ (x >> np.uint64(31))


def _sequence_rows(labels: np.ndarray, n: int, sequence: str, label: str) -> np.ndarray:
    """The rows that enter the sequences (N,) bool: the positives, or every row; refuses a label with no 1."""
    if sequence not in SEQUENCE:
        raise InputError(f"unknown --sequence {sequence!r}; choose from {', '.join(SEQUENCE)}")
    if sequence == "all":
        return np.ones(n, dtype=bool)
    keep = np.asarray(labels) == 1
    if not keep.any():
        raise InputError(f"label column {label!r} marks no row positive (no 1); the retrieval task takes each "
                         "user's positive items: give positives the label 1, or pass --sequence all")
    return keep


def _refuse_short(longest: int, sequence: str) -> None:
    """Refuse a log whose longest user sequence has fewer than MIN_ITEMS items."""
    if longest < MIN_ITEMS:
        raise InputError(f"no user has {MIN_ITEMS} or more {'positive ' if sequence == 'positives' else ''}items "
                         f"(the most is {longest}); leave-one-out needs a training, a validation "
                         "and a test item per user: pass a longer log" +
                         (" or --sequence all" if sequence == "positives" else ""))


def check_sequences(users: np.ndarray, labels: np.ndarray, sequence: str = "positives", label: str = "label") -> None:
    """The refusals of :func:`build_sequences`, without sorting: run on the encoded log before anything is logged.

    ``users`` are non-negative int codes (N,). Raises InputError as build_sequences would.
    """
    keep = _sequence_rows(labels, len(users), sequence, label)
    _refuse_short(int(np.bincount(np.asarray(users)[keep]).max(initial=0)), sequence)


def build_sequences(users: np.ndarray, items: np.ndarray, labels: np.ndarray, times: np.ndarray | None,
                    n_items: int, sequence: str = "positives", label: str = "label") -> Sequences:
    """The leave-one-out sequences of a log.

    Parameters
    ----------
    users, items : ndarray int (N,)
        User codes and item rows of every log row.
    labels : ndarray (N,) 0/1
    times : ndarray (N,) or None
        A sort key (ties: :func:`tie_order` of (user, item)); None: the rows' order is their time order.
    n_items : int
        M, the catalogue size (items rows lie in [0, M)).
    sequence : "positives" (rows labelled 1) or "all" (every row).
    label : the label column's name, for messages.

    Returns
    -------
    Sequences
        ``dropped_users`` counts every user of the log not kept, those without a positive row included:
        ``n_users + dropped_users`` is the number of distinct users in ``users``.

    Raises
    ------
    InputError
        When the label marks no positive row, or no user has MIN_ITEMS items.
    """
    users = np.asarray(users)
    rows = np.flatnonzero(_sequence_rows(labels, len(users), sequence, label))
    ties = (tie_order(users[rows], np.asarray(items)[rows]) if times is not None else np.arange(len(rows)))
    keys = [np.arange(len(rows)), ties] + ([np.asarray(times)[rows]] if times is not None else []) + [users[rows]]
    order = rows[np.lexsort(keys)]  # by user, then time, then the tie hash (row order without times)
    user_of, item_of = users[order], np.asarray(items, dtype=np.int64)[order]
    starts = np.r_[0, np.flatnonzero(user_of[1:] != user_of[:-1]) + 1, len(order)]
    lengths = np.diff(starts)
    _refuse_short(int(lengths.max(initial=0)), sequence)
    kept = lengths >= MIN_ITEMS
    take = np.repeat(kept, lengths)
    in_log = len(np.unique(users))
    result = Sequences(item_of[take], np.r_[0, np.cumsum(lengths[kept])].astype(np.int64), int(n_items),
                       in_log - int(kept.sum()))
    logger.info("leave-one-out: %d users kept, %d dropped (%d with fewer than %d %sitems, %d with none), "
                "%d items in sequences", result.n_users, result.dropped_users, int((~kept).sum()), MIN_ITEMS,
                "positive " if sequence == "positives" else "", in_log - len(lengths), len(result.items))
    return result
