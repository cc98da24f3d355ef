"""Full IDs for new items: suffix slots per prefix, the per-prefix cap and the nearest-prefix fallback.

Here a *prefix* is the L codes a model gives an item; the suffix (one more
token) tells apart the items of one prefix. Each prefix has *slots*, one per
suffix value ever handed out there. A slot is *held* while an item holds it;
a retired item keeps holding its slot (its full ID is never handed out
again), unless the publish reuses retired slots, in which case they are free
and new items take them first, smallest suffix first. A new item otherwise
takes the prefix's next suffix (the largest ever handed out, plus one), in
catalogue order. Without suffixes, a slot is an item.

With a cap, a prefix never holds more than ``cap`` slots. The new items of a
full prefix that fit the least well (largest distance to the prefix's
reconstruction) move to the nearest prefix with room, by the model's own
distance: every moving item proposes its nearest candidate with room, each
prefix accepts the nearest proposers that fit, the others propose their next
candidate, until every item is placed (a capacitated nearest assignment in
vectorised rounds). Candidates come from a beam over the levels
(:mod:`rqgmm.store.nearest`); the beam widens for items whose candidates are all full.

Prefixes are handled as one int64 key each (:mod:`rqgmm.ids.keys`), so a store's
codebook sizes must multiply to less than 2**62.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np

from rqgmm.errors import InputError
from rqgmm.ids.keys import key_strides, row_keys, rows_of_keys

logger = logging.getLogger(__name__)

FIRST_BEAM = 8
BEAM_GROWTH = 8

#: candidates(rows (m,), beam) -> (prefix keys (m, M), costs (m, M)), nearest first
Candidates = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


# --------------------------------------------------------------------------- keys


def prefix_keys(codes: np.ndarray, sizes: list[int]) -> np.ndarray:
    """One int64 key (N,) per row of codes (N, L)."""
    return row_keys(codes, sizes)


def codes_of_keys(keys: np.ndarray, sizes: list[int]) -> np.ndarray:
    """Codes (N, L) of prefix keys (N,): the inverse of :func:`prefix_keys`."""
    return rows_of_keys(keys, sizes)


def group_rank(keys: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
    """Rank (N,) of each element within its key's group: by ``order`` (ascending), then by position."""
    sort = np.lexsort((order, keys)) if order is not None else np.argsort(keys, kind="stable")
    sorted_keys = keys[sort]
    starts = np.r_[0, np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1]
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(keys)]))
    rank = np.empty(len(keys), dtype=np.int64)
    rank[sort] = np.arange(len(keys)) - run_start
    return rank


def _lookup(sorted_keys: np.ndarray, values: np.ndarray, query: np.ndarray, default: int) -> np.ndarray:
    """values[i] where sorted_keys[i] == query, else ``default`` (vectorised)."""
    if not len(sorted_keys):
        return np.full(query.shape, default, dtype=values.dtype)
    at = np.minimum(np.searchsorted(sorted_keys, query), len(sorted_keys) - 1)
    return np.where(sorted_keys[at] == query, values[at], default)


# -------------------------------------------------------------------------- slots


@dataclass(frozen=True)
class Slots:
    """What a store's prefixes hold before a publish.

    keys : (P,) sorted distinct prefix keys with at least one slot
    held : (P,) slots new items cannot take
    next_suffix : (P,) the largest suffix handed out plus one
    free_keys, free_suffix : (F,) slots new items take first (only when reusing retired slots), sorted
    """

    keys: np.ndarray
    held: np.ndarray
    next_suffix: np.ndarray
    free_keys: np.ndarray
    free_suffix: np.ndarray

    def held_of(self, keys: np.ndarray) -> np.ndarray:
        return _lookup(self.keys, self.held, keys, 0)

    @property
    def largest(self) -> tuple[int, int]:
        """(key, held) of the prefix holding the most slots; (-1, 0) for an empty store."""
        if not len(self.keys):
            return -1, 0
        i = int(np.argmax(self.held))
        return int(self.keys[i]), int(self.held[i])


def store_slots(keys: np.ndarray, suffix: np.ndarray | None, live: np.ndarray, reuse: bool,
                sizes: list[int]) -> Slots:
    """The slots of a store's rows: prefix keys (N,), suffix (N,) or None, live (N,) bool; codebook sizes (L,)."""
    empty = np.zeros(0, dtype=np.int64)
    if suffix is None:  # a slot per item
        holding = live if reuse else np.ones(len(keys), dtype=bool)
        uniq, held = np.unique(keys[holding], return_counts=True)
        return Slots(uniq, held.astype(np.int64), np.zeros(len(uniq), dtype=np.int64), empty, empty)
    width = int(suffix.max()) + 1 if len(suffix) else 1
    key_strides([*sizes, width, 2])  # the combined key fits in int64
    # one sort of (key, suffix, live): a slot's rows are adjacent, a live holder last among them
    combo = np.sort((keys * width + suffix) * 2 + live)
    slot_of = combo >> 1
    last = np.r_[slot_of[1:] != slot_of[:-1], True] if len(combo) else np.zeros(0, dtype=bool)
    slot_live = (combo[last] & 1).astype(bool)
    slot_key, slot_suffix = slot_of[last] // width, slot_of[last] % width
    holding = slot_live | (not reuse)
    start = np.flatnonzero(np.r_[True, slot_key[1:] != slot_key[:-1]]) if len(slot_key) else empty
    uniq = slot_key[start]
    held = np.add.reduceat(holding.astype(np.int64), start) if len(uniq) else empty
    next_suffix = np.maximum.reduceat(slot_suffix, start) + 1 if len(uniq) else empty
    return Slots(uniq, held, next_suffix, slot_key[~holding], slot_suffix[~holding])


def check_cap(slots: Slots, cap: int | None, sizes: list[int]) -> None:
    """Refuse a cap below the load of a prefix."""
    key, load = slots.largest
    if cap is not None and load > cap:
        codes = ",".join(map(str, codes_of_keys(np.array([key]), sizes)[0]))
        raise InputError(f"--max-per-prefix {cap} is below the load of prefix ({codes}), which holds {load} slots; "
                         f"pass --max-per-prefix {load} or more")


# ---------------------------------------------------------------------- placement


def place(keys: np.ndarray, slots: Slots, cap: int | None, own_cost: np.ndarray | None,
          candidates: Candidates, full_beam: int) -> tuple[np.ndarray, np.ndarray]:
    """Final prefix keys (n,) of new items and the mask (n,) of those that fell back to another prefix.

    Parameters
    ----------
    keys : (n,) the prefix the model gives each new item
    slots : the store's slots before this publish
    cap : slots per prefix at most, or None
    own_cost : (n,) each item's distance to its own prefix (needed with a cap): the nearest stay
    candidates : nearest prefixes of some items (see :data:`Candidates`)
    full_beam : the beam that makes every prefix a candidate (Π_{l<L} K_l)
    """
    fallback = np.zeros(len(keys), dtype=bool)
    if cap is None or not len(keys):
        return keys, fallback
    room = cap - slots.held_of(keys)
    fallback = group_rank(keys, own_cost) >= room
    moving = np.flatnonzero(fallback)
    placed = np.unique(keys[~fallback], return_counts=True)
    out = keys.copy()
    beam = FIRST_BEAM
    while len(moving):
        cand_keys, cand_cost = candidates(moving, beam)
        done, chosen = _rounds(cand_keys, cand_cost, slots, cap, placed)
        out[moving[done]] = chosen
        placed = np.unique(np.concatenate([np.repeat(*placed), chosen]), return_counts=True)
        moving = moving[~done]
        if beam >= full_beam:
            break
        beam *= BEAM_GROWTH
    if len(moving):
        raise InputError(f"every prefix is full: {len(moving)} new items find no prefix with room under "
                         f"--max-per-prefix {cap}; raise it")
    logger.info("%d of %d new items fell back to the nearest prefix with room (cap %d)",
                int(fallback.sum()), len(keys), cap)
    return out, fallback


def _rounds(cand_keys: np.ndarray, cand_cost: np.ndarray, slots: Slots, cap: int,
            placed: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Capacitated nearest assignment of m items to their candidates (m, M), nearest first.

    Returns the mask (m,) of the items placed and their chosen keys (in item order).
    """
    uniq, inverse = np.unique(cand_keys, return_inverse=True)
    inverse = inverse.reshape(cand_keys.shape)
    room = cap - slots.held_of(uniq) - _lookup(placed[0], placed[1], uniq, 0)
    m, width = cand_keys.shape
    pointer = np.zeros(m, dtype=np.int64)
    choice = np.full(m, -1, dtype=np.int64)
    pending = np.arange(m)
    positions = np.arange(width)
    while len(pending):
        open_ = (room[inverse[pending]] > 0) & (positions >= pointer[pending, None])
        can = open_.any(1)
        pending = pending[can]  # the others have no candidate with room left: widen the beam
        if not len(pending):
            break
        at = np.argmax(open_[can], 1)
        target = inverse[pending, at]
        accept = group_rank(target, cand_cost[pending, at]) < room[target]
        np.subtract.at(room, target[accept], 1)
        choice[pending[accept]] = at[accept]
        pointer[pending[~accept]] = at[~accept] + 1
        pending = pending[~accept]
    done = choice >= 0
    return done, cand_keys[np.flatnonzero(done), choice[done]]


# ------------------------------------------------------------------------ suffixes


def assign_suffix(keys: np.ndarray, slots: Slots) -> np.ndarray:
    """Suffix (n,) of new items with final prefix keys (n,): free slots first, then the next ones, in order."""
    rank = group_rank(keys)
    free_start = np.searchsorted(slots.free_keys, keys, side="left")
    n_free = np.searchsorted(slots.free_keys, keys, side="right") - free_start
    reuse = rank < n_free
    suffix = _lookup(slots.keys, slots.next_suffix, keys, 0) + rank - n_free
    if reuse.any():
        suffix[reuse] = slots.free_suffix[free_start[reuse] + rank[reuse]]
    return suffix
