"""Item content tables: what a CTR model knows about an item beyond its id.

Two kinds, both keyed by item id and covering every item (cold ones included):
dense vectors (an embedding column: one dense field) and semantic-ID codes
(one categorical field per level, sized by the codebook). Content is looked up
per item, never through the training vocabulary, which is why semantic IDs can
tell cold items apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rqgmm.errors import InputError
from rqgmm.ctr.spec import FieldSpec
from rqgmm.ctr.tensors import FieldBlock


def item_keys(ids) -> pd.Index:
    """Item ids as the string keys every lookup uses, shape (N,). An Index of strings (such as this function's
    output) is returned as it is: content tables made with it share its strings and its hash table."""
    if isinstance(ids, pd.Index) and pd.api.types.is_string_dtype(ids.dtype):
        return ids
    return pd.Index(np.asarray(ids).astype(str))


@dataclass
class ItemContent:
    """One content table.

    Attributes
    ----------
    name : str
        Field name (dense) or field-name prefix (codes: ``{name}_c1..``).
    ids : ndarray, shape (M,), or an Index of string keys (:func:`item_keys`) shared with other tables
    values : ndarray, shape (M, D) float32 (dense) or (M, L) int64 (codes)
    codebook_sizes : list of int (L,), or None for dense content
    """

    name: str
    ids: np.ndarray
    values: np.ndarray
    codebook_sizes: list[int] | None = None

    def __post_init__(self) -> None:
        self.ids = self.ids if isinstance(self.ids, pd.Index) else np.asarray(self.ids)
        if self.values.ndim != 2 or self.ids.shape != (len(self.values),):
            raise InputError(f"content {self.name!r} must be item ids (M,) and values (M, D), got shapes "
                             f"{self.ids.shape} and {self.values.shape}")
        self.keys = item_keys(self.ids)
        if not self.keys.is_unique:
            dup = self.keys[self.keys.duplicated()].unique()[:5].tolist()
            raise InputError(f"content {self.name!r} has duplicate item ids {dup}; keep one row per item")

    @classmethod
    def embedding(cls, name: str, ids, vectors) -> "ItemContent":
        """Dense content: vectors (M, D), finite."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim == 2 and not np.isfinite(vectors).all():
            raise InputError(f"content {name!r} has NaN or Inf values; drop or impute those items")
        return cls(name, ids, vectors)

    @classmethod
    def codes(cls, name: str, ids, codes, codebook_sizes: Sequence[int]) -> "ItemContent":
        """Semantic-ID content: codes (M, L) int64 with code ``z_l`` in ``[0, K_l)``."""
        codes, sizes = np.asarray(codes), [int(k) for k in codebook_sizes]
        if not np.issubdtype(codes.dtype, np.integer):
            raise InputError(f"codes must be integers, got {codes.dtype}; pass the int64 table from encode")
        if codes.ndim != 2 or codes.shape[1] != len(sizes):
            raise InputError(f"content {name!r}: {len(sizes)} codebook sizes for codes of shape {codes.shape}; "
                             "pass one size per level")
        for level, size in enumerate(sizes):
            col = codes[:, level]
            if len(col) and (col.min() < 0 or col.max() >= size):
                raise InputError(f"codes at level {level + 1} must lie in [0, {size}), got values in "
                                 f"[{col.min()}, {col.max()}]; pass the codebook sizes the tokenizer used")
        return cls(name, ids, codes.astype(np.int64), sizes)

    @property
    def is_codes(self) -> bool:
        return self.codebook_sizes is not None

    def fields(self, dim: int) -> list[FieldSpec]:
        """The model fields this content feeds: one per level (codes) or one dense field."""
        if self.is_codes:
            return [FieldSpec(name, k, dim) for name, k in zip(self.field_names, self.codebook_sizes)]
        return [FieldSpec(self.name, 0, dim, kind="dense", input_dim=self.values.shape[1])]

    @property
    def field_names(self) -> list[str]:
        if self.is_codes:
            return [f"{self.name}_c{level + 1}" for level in range(self.values.shape[1])]
        return [self.name]

    def rows(self, keys: pd.Index) -> np.ndarray:
        """Rows (N,) int64 of the items ``keys``; every item must be present."""
        rows = self.keys.get_indexer(keys).astype(np.int64)
        if (rows < 0).any():
            absent = pd.unique(np.asarray(keys)[rows < 0])
            raise InputError(f"{len(absent)} item id(s) in the interactions are missing from the content "
                             f"{self.name!r} (first: {absent[:5].tolist()}); give every item its content, "
                             "cold ones included")
        return rows

    def cost(self, dim: int) -> dict:
        """Parameters the model spends on this content and bytes per item to serve it."""
        if self.is_codes:
            bits = sum(max(1, int(np.ceil(np.log2(k)))) for k in self.codebook_sizes)
            return {"parameters": sum(self.codebook_sizes) * dim, "bytes_per_item": int(np.ceil(bits / 8))}
        width = self.values.shape[1]
        return {"parameters": width * dim + dim, "bytes_per_item": 4 * width}


def content_block(contents: Sequence[ItemContent], keys: pd.Index, codes: np.ndarray | None = None,
                  bags: Sequence[np.ndarray] = (), numeric: np.ndarray | None = None) -> FieldBlock:
    """The item block of the items ``keys`` (M,): their own fields, then each content's code levels and vectors.

    Parameters
    ----------
    contents : sequence of ItemContent
        Each must cover every item of ``keys``.
    keys : Index of str, shape (M,)
    codes, bags, numeric : optional
        The items' own fields, which come first: categorical (M, F) int32 (the
        item-id index, item-table fields), bags (M, G_f) each, numeric (M, F_n).
    """
    rows = [c.rows(keys) for c in contents]
    # the same items in the same order (evaluate's content): no copy of an (M, D) table per run
    take = [c.values if np.array_equal(r, np.arange(len(c.values))) else c.values[r] for c, r in zip(contents, rows)]
    levels = [t.astype(np.int32) for c, t in zip(contents, take) if c.is_codes]
    columns = ([] if codes is None else [codes]) + levels
    dense = [t for c, t in zip(contents, take) if not c.is_codes]
    return FieldBlock.build(len(keys), np.concatenate(columns, 1) if columns else None, bags, numeric, dense)
