"""Encoded rows as models read them: a row block, an item block gathered per row, and packed batches.

Every categorical field of a row is one int32 column of one ``(N, F)`` matrix
(the model adds each field's offset into its one shared table), every bag
field a group of columns of one ``(N, G)`` matrix, every numeric field a column
of one float ``(N, F_n)`` matrix. What belongs to the item (its id's index,
item-table fields, semantic-ID codes, content embeddings) is held once per
item in a block of the same shape and gathered by each row's item index, so
a content variant costs ``M`` rows, not ``N``. A batch is then a handful of
gathers, whatever the number of fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np
import torch


class Batch(NamedTuple):
    """The model inputs of B rows (see :class:`~rqgmm.ctr.layers.FeatureEmbedding`).

    Attributes
    ----------
    codes : Tensor (B, F_c) int
        Categorical fields, each in its own vocabulary (0 = never seen).
    bags : Tensor (B, G) int
        Bag values side by side, 0 = padding or never seen.
    bag_fields : Tensor (G,) int64
        The bag field (0..F_b-1) of each column of ``bags``.
    numeric : Tensor (B, F_n) float32
    dense : tuple of Tensor (B, D_k) float32
        Dense content fields (embedding vectors).
    """

    codes: torch.Tensor
    bags: torch.Tensor
    bag_fields: torch.Tensor
    numeric: torch.Tensor
    dense: tuple[torch.Tensor, ...]


def _tensor(values, dtype: np.dtype, n: int) -> torch.Tensor:
    """``values`` as a tensor of ``dtype`` (no copy where it already is one); None → shape (n, 0)."""
    if values is None:
        return torch.from_numpy(np.zeros((n, 0), dtype))
    return torch.from_numpy(np.ascontiguousarray(values, dtype=dtype))


@dataclass
class FieldBlock:
    """Fields of n rows (interactions or items), one matrix per kind.

    Attributes
    ----------
    codes : Tensor (n, F_c) int32
    bags : Tensor (n, G) int32
    bag_fields : Tensor (G,) int64
        Bag field of each column, counted within this block.
    numeric : Tensor (n, F_n) float32
    dense : tuple of Tensor (n, D_k) float32
    """

    codes: torch.Tensor
    bags: torch.Tensor
    bag_fields: torch.Tensor
    numeric: torch.Tensor
    dense: tuple[torch.Tensor, ...] = ()

    @classmethod
    def build(cls, n: int, codes=None, bags=(), numeric=None, dense=()) -> "FieldBlock":
        """From numpy arrays: ``codes`` (n, F_c), ``bags`` a sequence of (n, G_f), ``numeric`` (n, F_n)."""
        bags = [np.asarray(b, np.int32) for b in bags]
        bag_fields = np.concatenate([np.full(b.shape[1], f) for f, b in enumerate(bags)] or [np.zeros(0)])
        return cls(_tensor(codes, np.int32, n), _tensor(np.concatenate(bags, 1) if bags else None, np.int32, n),
                   torch.from_numpy(bag_fields.astype(np.int64)), _tensor(numeric, np.float32, n),
                   tuple(_tensor(d, np.float32, n) for d in dense))

    @property
    def num_bag_fields(self) -> int:
        return int(self.bag_fields.max()) + 1 if len(self.bag_fields) else 0

    def rows(self, index) -> "FieldBlock":
        """The rows ``index`` (a slice is a view)."""
        return FieldBlock(self.codes[index], self.bags[index], self.bag_fields, self.numeric[index],
                          tuple(d[index] for d in self.dense))

    def to(self, device, non_blocking: bool = False) -> "FieldBlock":
        move = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return FieldBlock(move(self.codes), move(self.bags), move(self.bag_fields), move(self.numeric),
                          tuple(move(d) for d in self.dense))

    def pin_memory(self) -> "FieldBlock":
        return FieldBlock(self.codes.pin_memory(), self.bags.pin_memory(), self.bag_fields,
                          self.numeric.pin_memory(), tuple(d.pin_memory() for d in self.dense))

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.codes, self.bags, self.numeric, *self.dense))


@dataclass
class CTRTensors:
    """The rows of one table, ready for a model.

    Attributes
    ----------
    rows : FieldBlock, N rows
        Fields held per interaction row.
    items : FieldBlock, M rows
        Fields held per item, gathered by ``item_rows``.
    item_rows : Tensor (N,) int64
        Each row's row of ``items``.
    labels : Tensor (N,) float32 or int8, or None
    names : list of str
        Field names in model order: categorical (rows, then items), bag
        (rows, then items), numeric (rows, then items), dense.
    """

    rows: FieldBlock
    items: FieldBlock
    item_rows: torch.Tensor
    labels: torch.Tensor | None = None
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.item_rows.shape[0])

    def __post_init__(self) -> None:
        # B-independent: the bag field of each column of a batch's ``bags`` (G_rows + G_items,)
        # on the item block's device: it is the compute device once placed (the rows may stay on the host)
        device = self.items.bag_fields.device
        self.bag_fields = torch.cat([self.rows.bag_fields.to(device),
                                     self.items.bag_fields + self.rows.num_bag_fields])

    def batch(self, index) -> Batch:
        """The model inputs of the rows ``index`` (a slice, or an index tensor on the tensors' device)."""
        return _gather(self.rows, self.items, self.item_rows, index, self.bag_fields)

    def part(self, index) -> "CTRTensors":
        """The rows ``index`` (a slice is a view); the item block is shared."""
        labels = None if self.labels is None else self.labels[index]
        return replace(self, rows=self.rows.rows(index), item_rows=self.item_rows[index], labels=labels)

    def to(self, device: str | torch.device) -> "CTRTensors":
        """``self`` with every tensor on ``device`` (tensors already there are not copied)."""
        return replace(self, rows=self.rows.to(device), items=self.items.to(device),
                       item_rows=self.item_rows.to(device),
                       labels=None if self.labels is None else self.labels.to(device))

    @property
    def fields(self) -> dict[str, torch.Tensor]:
        """Per-row values by field name (categorical (N,), bag (N, G_f), numeric (N, 1)); for inspection."""
        whole = self.batch(slice(None))
        n_codes, n_bags = whole.codes.shape[1], self.rows.num_bag_fields + self.items.num_bag_fields
        names = iter(self.names)
        out = {next(names): column for column in whole.codes.unbind(1)}
        out.update({next(names): whole.bags[:, whole.bag_fields == f] for f in range(n_bags)})
        out.update({next(names): whole.numeric[:, i:i + 1] for i in range(whole.numeric.shape[1])})
        assert len(out) == n_codes + n_bags + whole.numeric.shape[1]
        return out

    @property
    def nbytes(self) -> int:
        return self.rows.nbytes + self.items.nbytes + self.item_rows.numel() * 8


def _gather(rows: FieldBlock, items: FieldBlock, item_rows: torch.Tensor, index, bag_fields: torch.Tensor) -> Batch:
    """Rows ``index`` of ``rows`` beside their items' rows of ``items``: a few gathers and concatenations."""
    at = item_rows[index].long()
    return Batch(torch.cat([rows.codes[index], items.codes[at]], 1), torch.cat([rows.bags[index], items.bags[at]], 1),
                 bag_fields, torch.cat([rows.numeric[index], items.numeric[at]], 1),
                 tuple(d[at] for d in items.dense))
