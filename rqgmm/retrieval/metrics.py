"""Recall@K and NDCG@K of generated ID lists, at the item level (with the collision correction) and the ID level.

**Collision correction (ranking).** A generated ID shared by m items stands
for those m items, ordered by training popularity (most first; ties by item
row). The generated IDs, best first, are expanded into that item list and the
target item's rank is its place in it: an ID ranked j-th whose group holds the
target at place p gives the item rank (sizes of the groups of IDs 1..j-1) + p.
The ID-level rank is j: it counts any hit on a shared ID as a hit on every
item behind it, which is what inflates ID-level metrics.

Worked case (the test's): IDs (1,0) for items 0, 1, 2 (training counts 1, 5,
3), (2,1) for item 3, (0,3) for item 4; generated list (1,0), (2,1), (0,3).
Group (1,0) is ordered 1, 2, 0, so the item list is 1, 2, 0, 3, 4. Target 0:
ID rank 1, item rank 3. Target 3: ID rank 2, item rank 4.

Recall@K is the share of targets with rank <= K (one target per user);
NDCG@K = 1 / log2(rank + 1) when rank <= K, else 0 (one relevant item, so the
ideal DCG is 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rqgmm.ids.keys import row_keys

KS = (5, 10, 20)
MISS = np.iinfo(np.int64).max


@dataclass(frozen=True)
class IdGroups:
    """The items behind each distinct ID, ordered by training popularity.

    Attributes
    ----------
    keys : ndarray int64 (I,)
        Distinct ID keys, sorted.
    sizes : ndarray int64 (I,)
        m, the items of each ID.
    place : ndarray int64 (M,)
        Each item's 1-based place among the items of its ID.
    item_key : ndarray int64 (M,)
    """

    keys: np.ndarray
    sizes: np.ndarray
    place: np.ndarray
    item_key: np.ndarray

    @classmethod
    def build(cls, item_key: np.ndarray, popularity: np.ndarray) -> "IdGroups":
        """Groups of the items' ID keys (M,) ordered by popularity (M,), most first, ties by item row."""
        item_key = np.asarray(item_key, dtype=np.int64)
        order = np.lexsort((np.arange(len(item_key)), -np.asarray(popularity), item_key))
        keys, starts, sizes = np.unique(item_key[order], return_index=True, return_counts=True)
        place = np.empty(len(item_key), dtype=np.int64)
        place[order] = np.arange(len(order)) - np.repeat(starts, sizes) + 1
        return cls(keys, sizes.astype(np.int64), place, item_key)

    def size_of(self, keys: np.ndarray) -> np.ndarray:
        """m of each ID key (any shape); 0 for keys of no item (or -1)."""
        at = np.clip(np.searchsorted(self.keys, keys), 0, len(self.keys) - 1)
        return np.where(self.keys[at] == keys, self.sizes[at], 0)


def ranks(generated: np.ndarray, sizes: list[int], targets: np.ndarray, groups: IdGroups) -> tuple[np.ndarray,
                                                                                                    np.ndarray]:
    """Item-level and ID-level 1-based rank of each target (MISS when not generated).

    Parameters
    ----------
    generated : ndarray int (U, W, G)
        Generated IDs per user, best first, distinct; rows of -1 are empty.
    sizes : vocabulary sizes of the G ID tokens
    targets : ndarray int (U,), item rows
    groups : IdGroups of the catalogue

    Returns
    -------
    item_rank, id_rank : ndarray int64 (U,)
    """
    U, W, G = generated.shape
    empty = (generated < 0).any(2)
    keys = np.where(empty, -1, row_keys(np.maximum(generated, 0).reshape(-1, G), sizes).reshape(U, W))
    m = groups.size_of(keys)
    before = np.cumsum(m, 1) - m
    hit = keys == groups.item_key[targets][:, None]
    found = hit.any(1)
    j = hit.argmax(1)
    id_rank = np.where(found, j + 1, MISS)
    item_rank = np.where(found, before[np.arange(U), j] + groups.place[targets], MISS)
    return item_rank, id_rank


def recall_ndcg(rank: np.ndarray, ks=KS) -> dict[str, float]:
    """``recall@K`` and ``ndcg@K`` for each K over ranks (U,); None when there is no user."""
    if len(rank) == 0:
        return {f"{name}@{k}": None for k in ks for name in ("recall", "ndcg")}
    gain = 1.0 / np.log2(np.minimum(rank, 1 << 62).astype(np.float64) + 1.0)
    out = {}
    for k in ks:
        out[f"recall@{k}"] = float(np.mean(rank <= k))
        out[f"ndcg@{k}"] = float(np.mean(np.where(rank <= k, gain, 0.0)))
    return out


def inflation(item: dict, ids: dict, ks=KS) -> dict[str, float | None]:
    """ID-level over item-level Recall@K minus 1, per K (None when the item level is 0)."""
    return {f"recall@{k}": (ids[f"recall@{k}"] / item[f"recall@{k}"] - 1.0 if item[f"recall@{k}"] else None)
            for k in ks}


def first_per_user(n_users: int, take: int, user: np.ndarray, keys: tuple[np.ndarray, ...],
                   columns: tuple[np.ndarray, ...], fills: tuple) -> list[np.ndarray]:
    """Each user's first ``take`` entries, as one (n_users, take) table per column.

    Parameters
    ----------
    user : ndarray int (N,), the user (row) of each entry
    keys : the order within a user, as ``np.lexsort`` takes them (least significant first)
    columns : ndarrays (N,), the values to place
    fills : where a user has fewer than ``take`` entries, one per column
    """
    order = np.lexsort((*keys, user))
    user = user[order]
    place = np.arange(len(user)) - np.searchsorted(user, user)  # the entry's place in its user's order
    within = place < take
    kept, at = order[within], (user[within], place[within])
    tables = []
    for column, fill in zip(columns, fills):
        table = np.full((n_users, take), fill, dtype=np.result_type(column, np.asarray(fill)))
        table[at] = column[kept]
        tables.append(table)
    return tables
