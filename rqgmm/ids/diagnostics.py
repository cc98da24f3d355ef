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


def consecutive_pairs(users: np.ndarray, rows: np.ndarray, clicked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each user's consecutive positive rows (in the given order) as pairs of item rows (first, second)."""
    keep = np.asarray(clicked, dtype=bool)
    users = np.asarray(users)[keep]
    order = np.argsort(users, kind="stable")  # a user's rows keep the log's order
    users = users[order]
    same = users[1:] == users[:-1]
    del users  # each copy of the positive rows goes before the next is made
    rows = np.asarray(rows)[keep][order]
    del order
    return rows[:-1][same], rows[1:][same]


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
        observed = float((prefixes[first] == prefixes[second]).mean()) if len(first) else None
        expected = repeat + (1 - repeat) * chance
        out.append(dict(level=level, observed=observed, expected=expected,
                        lift=observed / expected if observed is not None and expected > 0 else None))
    return out


def click_rates(rows: np.ndarray, clicked: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """The item rows (S,) with at least one row in ``rows`` (M,), and their click rates (S,) float64 (clicks
    counted as integers: no float copy of the log)."""
    counts = bincount(rows, minlength=n_items)
    seen = np.flatnonzero(counts)
    clicks = bincount(rows[np.asarray(clicked, dtype=bool)], minlength=n_items)
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
    users : (M,), each log row's user (any comparable ids).
    clicked : (M,) bool, each log row's label.

    Returns
    -------
    dict
        ``pairs`` (the users' consecutive positive pairs), ``coherence`` (:func:`coclick_coherence`, per
        level) and ``r2`` (:func:`click_rate_r2`, per level).
    """
    return ClickFacts.of(rows, users, clicked, len(codes)).diagnostics(codes)
