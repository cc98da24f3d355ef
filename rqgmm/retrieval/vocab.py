"""The tokens of each item for a generative retriever: a semantic ID, random IDs of its shape, or one item token.

An item is T input tokens, token t in ``[0, V_t)``; the first G of them are
the ID the model generates. A semantic ID is its L codes and the suffix that
tells apart items sharing them (:func:`rqgmm.ids.suffix.unique_suffix`, the
dedup level of TIGER). Dedup ``"generated"`` (the default): the model generates
all L + 1 tokens (G = L + 1), so every generated ID is one item and the item
level equals the ID level. Dedup ``"none"``: only the L codes are generated
(G = L; the suffix is input only) and a generated ID shared by m items stands
for all m (the collision correction of :mod:`.metrics`), kept for comparison.
The item-ID control is one token per item (T = G = 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rqgmm.runtime.seeding import child_seed

from rqgmm.ids.suffix import unique_suffix
from rqgmm.errors import InputError
from rqgmm.ids.keys import key_strides, row_keys

ITEM_ID, RANDOM = "item-id", "random"
#: How the suffix is treated: generated as the last ID token (TIGER's dedup level), or input only.
DEDUP = ("generated", "none")


@dataclass(frozen=True)
class ItemTokens:
    """Tokens of the M items.

    Attributes
    ----------
    tokens : ndarray int64 (M, T)
    sizes : tuple of int, length T
        V_t per position.
    generated : int
        G: the first G positions are the generated ID.
    """

    tokens: np.ndarray
    sizes: tuple[int, ...]
    generated: int

    @classmethod
    def semantic(cls, codes: np.ndarray, codebook_sizes, dedup: str = "generated") -> "ItemTokens":
        """The L codes of codes (M, L) and the collision suffix; generated: L + 1 tokens, or L (``dedup="none"``).

        Raises InputError for an unknown dedup mode, or full IDs too many to key in an int64.
        """
        if dedup not in DEDUP:
            raise InputError(f"unknown dedup mode {dedup!r}; choose from {', '.join(DEDUP)}")
        codes = np.asarray(codes, dtype=np.int64)
        suffix = unique_suffix(codes)
        sizes = (*(int(k) for k in codebook_sizes), int(suffix.max(initial=0)) + 1)
        key_strides(list(sizes))  # the full IDs must be representable as one key
        return cls(np.column_stack([codes, suffix]), sizes, codes.shape[1] + (dedup == "generated"))

    @classmethod
    def random_like(cls, codes: np.ndarray, codebook_sizes, seed: int, dedup: str = "generated") -> "ItemTokens":
        """The same ID rows (shape, codebook sizes, collision sizes) dealt to the items at random (child seed "random ids")."""
        perm = np.random.default_rng(child_seed(seed, "random ids")).permutation(len(codes))
        return cls.semantic(np.asarray(codes)[perm], codebook_sizes, dedup)

    @classmethod
    def item_ids(cls, n_items: int) -> "ItemTokens":
        """One token per item (M, 1)."""
        return cls(np.arange(n_items, dtype=np.int64)[:, None], (int(n_items),), 1)

    @property
    def prefix_length(self) -> int:
        """The tokens of an ID's prefix that the cold-item rule matches: the L codes (all but a generated suffix)."""
        return self.generated - 1 if self.generated == len(self.sizes) and self.generated > 1 else self.generated

    @property
    def length(self) -> int:
        """T, input tokens per item."""
        return len(self.sizes)

    @property
    def ids(self) -> np.ndarray:
        """The generated IDs (M, G)."""
        return self.tokens[:, :self.generated]

    def id_keys(self) -> np.ndarray:
        """One int64 key per item's generated ID (M,): equal keys, shared ID."""
        return row_keys(self.ids, list(self.sizes[:self.generated]))
