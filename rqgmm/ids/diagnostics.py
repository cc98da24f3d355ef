"""Checks of a codes table against a click log that need no CTR training (issue 26, item 7).

Per level l (the length-l prefixes of the full IDs):

- co-click coherence: the share of a user's consecutive positive pairs whose two items share the
  level's prefix, against the share expected when the same IDs are dealt to the items at random
  (a permutation: every prefix keeps its number of items); their ratio is the lift;
- click-rate R²: the share of the variance of the items' click rates (each item with a row
  counted once) that the prefixes explain (between-group over total sum of squares), against its
  expectation under the same random permutation, (G - 1) / (n - 1) for G groups over n items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rqgmm.ids.metrics import prefix_groups
from rqgmm.runtime.counting import bincount


#: Log rows read at once by :func:`consecutive_pairs`, and pairs compared at once by the coherence.
CHUNK = 1 << 22


def consecutive_pairs(users: np.ndarray, rows: np.ndarray, clicked: np.ndarray,
                      chunk: int = CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Each user's consecutive positive rows (in the given order) as pairs of item rows (first, second).

    ``users`` (M,): any comparable ids; non-negative integer codes below ``2 M + 1024`` (``evaluate``'s) are read as
    they are, others are numbered first (one sort). The log is read ``chunk`` rows at a time, each user's last
    positive item carried from one chunk to the next, so no sort of the whole log is made; the pairs come
    chunk by chunk (within a chunk by user), an order no check reads. Both results are views of buffers sized
    by the positive rows.
    """
    keep, users, rows = np.asarray(clicked, dtype=bool), _user_codes(np.asarray(users)), np.asarray(rows)
    positives = int(np.count_nonzero(keep))
    first, second = np.empty(positives, rows.dtype), np.empty(positives, rows.dtype)
    last = np.full(int(users.max()) + 1 if len(users) else 0, -1, np.int64)  # each user's last positive item
    found = 0
    for start in range(0, len(users), chunk):
        part = keep[start:start + chunk]
        who, what = users[start:start + chunk][part], rows[start:start + chunk][part]
        order = np.argsort(who, kind="stable")  # a user's rows keep the log's order
        who, what = who[order], what[order]
        opens = np.r_[True, who[1:] != who[:-1]][:len(who)]  # each user's first row in the chunk
        closes = np.r_[opens[1:], True][:len(who)]  # and last
        before = last[who[opens]]
        carried, within = before >= 0, ~opens[1:]
        pairs = np.r_[before[carried], what[:-1][within]], np.r_[what[opens][carried], what[1:][within]]
        first[found:found + len(pairs[0])], second[found:found + len(pairs[0])] = pairs
        found += len(pairs[0])
        last[who[closes]] = what[closes]
    return first[:found], second[:found]


def _user_codes(users: np.ndarray) -> np.ndarray:
    """``users`` as non-negative integer codes small enough to index a per-user array: as they are when they already
    are (below 2 M + 1024), else numbered by a sort."""
    if users.dtype.kind in "iu" and (not len(users) or (users.min() >= 0 and users.max() < 2 * len(users) + 1024)):
        return users
    return np.unique(users, return_inverse=True)[1].reshape(-1)


def coclick_coherence(codes: np.ndarray, first: np.ndarray, second: np.ndarray) -> list[dict]:
    """Per level: the observed share of pairs (item rows ``first``, ``second``) sharing the prefix, the
    share expected under random IDs of the same sizes, and their lift (None without pairs)."""
    return _coherence_by_level(prefix_groups(codes), len(codes), first, second)


def _coherence_by_level(groups: list[np.ndarray], n_items: int, first: np.ndarray,
                        second: np.ndarray) -> list[dict]:
    out = []
    repeat = float((first == second).mean()) if len(first) else 0.0
    for level, prefixes in enumerate(groups, start=1):
        sizes = np.bincount(prefixes).astype(np.float64)
        chance = float((sizes * (sizes - 1)).sum() / (n_items * (n_items - 1))) if n_items > 1 else 1.0
        observed = _shared(prefixes, first, second) / len(first) if len(first) else None
        expected = repeat + (1 - repeat) * chance
        out.append(dict(level=level, observed=observed, expected=expected,
                        lift=observed / expected if observed is not None and expected > 0 else None))
    return out


def _shared(prefixes: np.ndarray, first: np.ndarray, second: np.ndarray) -> int:
    """How many pairs (first, second) of item rows have equal ``prefixes``, :data:`CHUNK` pairs at a time."""
    return sum(int(np.count_nonzero(prefixes[first[s:s + CHUNK]] == prefixes[second[s:s + CHUNK]]))
               for s in range(0, len(first), CHUNK))


def click_rates(rows: np.ndarray, clicked: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """The item rows (S,) with at least one row in ``rows`` (M,), and their click rates (S,) float64 (clicks
    counted as integers: no float copy of the log)."""
    counts = bincount(rows, minlength=n_items)
    seen = np.flatnonzero(counts)
    clicked, clicks = np.asarray(clicked, dtype=bool), np.zeros(len(counts), np.int64)
    for s in range(0, len(rows), CHUNK):  # a chunk's clicked rows at a time, not a copy of all of them
        clicks += np.bincount(rows[s:s + CHUNK][clicked[s:s + CHUNK]], minlength=len(counts))
    return seen, clicks[seen] / counts[seen]


def click_rate_r2(codes: np.ndarray, rows: np.ndarray, clicked: np.ndarray) -> list[dict]:
    """Per level: R² of the items' click rates (items with at least one row in ``rows``) on the level's
    prefixes, and its expectation under random IDs of the same sizes."""
    return _r2_by_level(prefix_groups(codes), *click_rates(rows, clicked, len(codes)))


def _r2_by_level(groups: list[np.ndarray], seen: np.ndarray, rates: np.ndarray) -> list[dict]:
    total = float(((rates - rates.mean()) ** 2).sum())
    out = []
    for level, prefixes in enumerate(groups, start=1):
        seen_groups = np.unique(prefixes[seen], return_inverse=True)[1].reshape(-1)
        n_groups = seen_groups.max() + 1 if len(seen_groups) else 0
        means = np.bincount(seen_groups, weights=rates) / np.bincount(seen_groups)
        between = float((np.bincount(seen_groups) * (means - rates.mean()) ** 2).sum())
        expected = (n_groups - 1) / (len(seen) - 1) if len(seen) > 1 else None
        out.append(dict(level=level, r2=between / total if total > 0 else None, expected=expected))
    return out


@dataclass(frozen=True)
class ClickFacts:
    """What both checks read from a click log, computed once for every codes table of one catalogue.

    Attributes
    ----------
    first, second : (P,) int, the users' consecutive positive pairs of item rows (:func:`consecutive_pairs`)
    seen, rates : (S,) the item rows with a row in the log and their click rates (:func:`click_rates`)
    """

    first: np.ndarray
    second: np.ndarray
    seen: np.ndarray
    rates: np.ndarray

    @classmethod
    def of(cls, rows: np.ndarray, users: np.ndarray, clicked: np.ndarray, n_items: int) -> "ClickFacts":
        """From a log of M rows (item rows, users, bool labels, in the log's order) over ``n_items`` items."""
        clicked = np.asarray(clicked, dtype=bool)
        return cls(*consecutive_pairs(users, rows, clicked), *click_rates(rows, clicked, n_items))

    def diagnostics(self, codes: np.ndarray) -> dict:
        """Both checks of codes (N, L), N = ``n_items``: see :func:`diagnostics` (the prefixes numbered once
        for both)."""
        groups = prefix_groups(codes)
        return dict(pairs=int(len(self.first)),
                    coherence=_coherence_by_level(groups, len(codes), self.first, self.second),
                    r2=_r2_by_level(groups, self.seen, self.rates))


def diagnostics(codes: np.ndarray, rows: np.ndarray, users: np.ndarray, clicked: np.ndarray) -> dict:
    """Both checks of codes (N, L) against a click log of M rows, in the log's order.

    Parameters
    ----------
    codes : (N, L) int, the full IDs of the items.
    rows : (M,) int, each log row's item as a row of ``codes``.
    users : (M,), each log row's user (any comparable ids; :func:`consecutive_pairs`).
    clicked : (M,) bool, each log row's label.

    Returns
    -------
    dict
        ``pairs`` (the users' consecutive positive pairs), ``coherence`` (:func:`coclick_coherence`, per
        level) and ``r2`` (:func:`click_rate_r2`, per level).
    """
    return ClickFacts.of(rows, users, clicked, len(codes)).diagnostics(codes)
