"""A click log encoded once: every id, categorical and bag column as int32 codes, shared by every run.

:class:`LogEncoder` takes the log in pyarrow record batches and keeps only
int32 codes (:class:`~rqgmm.ctr.encoding.ColumnEncoder`), float numbers, int8
labels, the time as a sort key, and each row's row in the item table. The
item table's own fields are encoded once per item.

:meth:`EncodedLog.ordered` then puts the rows in split order (time or
shuffle: an ``argsort`` of int arrays) and replaces each dictionary code by a
vocabulary of the training part only (0 for values never seen there). Every
regime, content variant, seed and backbone reads that one table: a regime that
withholds fields leaves their columns out, a content variant adds per-item
tables gathered by the item row (:meth:`EncodedLog.tensors`).

Host memory: the dictionary-coded log and its ordered copy (2x the int table)
while ordering; the ordered copy afterwards, plus the item tables.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import torch

from rqgmm.errors import InputError
from rqgmm.runtime.device import resolve_device
from rqgmm.ctr.content import ItemContent, content_block
from rqgmm.ctr.encoding import (ColumnEncoder, encode_column, moments, remap_in_place, standardised,
                                training_vocabulary)
from rqgmm.ctr.spec import FeatureSpec, FieldSpec
from rqgmm.ctr.tensors import CTRTensors, FieldBlock
from rqgmm.ctr.vocabulary import as_keys
from rqgmm.runtime.counting import bincount

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LogColumns:
    """Which column of the log (and of the item table) plays which role.

    Parameters
    ----------
    user, item, label : str
        Columns of the log.
    time : str or None
        The log's time column (a sort key), or None.
    categorical, bag, numeric : tuple of str
        Declared fields held by the log's rows.
    item_categorical, item_bag, item_numeric : tuple of str
        Declared fields held by the item table.
    """

    user: str
    item: str
    label: str
    time: str | None = None
    categorical: tuple[str, ...] = ()
    bag: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    item_categorical: tuple[str, ...] = ()
    item_bag: tuple[str, ...] = ()
    item_numeric: tuple[str, ...] = ()

    @property
    def read(self) -> list[str]:
        """The log columns to read."""
        return [self.user, self.item, self.label, *([self.time] if self.time else []), *self.categorical,
                *self.bag, *self.numeric]


@dataclass
class ItemTable:
    """The item table's fields, one row per item.

    Attributes
    ----------
    keys : Index of str, shape (M,)
    order : ndarray int32 (M,)
        Each item's rank by its id value (the time split's last tie-break).
    codes, bags, numeric : dict of str → ndarray
        (M,) int32, (M, G) int32, (M,) float.
    sizes : dict of str → int
        Table rows of each code / bag column (0 included).
    ids : ndarray int32 (M,), or None
        Each item's index in the training vocabulary of item ids (0: never in training).
    """

    keys: pd.Index
    order: np.ndarray
    codes: dict[str, np.ndarray] = field(default_factory=dict)
    bags: dict[str, np.ndarray] = field(default_factory=dict)
    numeric: dict[str, np.ndarray] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    ids: np.ndarray | None = None

    @classmethod
    def encode(cls, items: pd.DataFrame, key: str, columns: LogColumns) -> "ItemTable":
        """Encode ``items`` (indexed by the str item key, one row per item)."""
        table = cls(pd.Index(items.index.astype(str)), pd.factorize(items[key], sort=True)[0].astype(np.int32))
        for kind, names in (("codes", columns.item_categorical), ("bags", columns.item_bag)):
            for name in names:
                codes, uniques = encode_column(name, items[name], bag=kind == "bags")
                getattr(table, kind)[name], table.sizes[name] = codes, len(uniques) + 1
        table.numeric = {name: _numbers(pa.array(items[name], from_pandas=True), name) for name in columns.item_numeric}
        return table


@dataclass
class EncodedLog:
    """The rows of a click log as int codes (see the module docstring).

    Attributes
    ----------
    columns : LogColumns
    codes : dict of str → ndarray int32 (N,)
        The user column and the row categorical columns.
    bags : dict of str → ndarray int32 (N, G)
    numeric : dict of str → ndarray (N,)
        Raw float64; standardised float32 once ordered.
    labels : ndarray int8 (N,)
    times : ndarray (N,) or None
        The time column as a sort key (numbers, or codes of sorted values).
    item_rows : ndarray int32 (N,)
        Each row's row of ``items``; -1 for an item the table lacks.
    items : ItemTable
    sizes : dict of str → int
        Table rows (0 included) of each code / bag column.
    unknown_items : (int, value) or None
        Rows whose item the item table lacks, and the first such item.
    n_train : int or None
        Set by :meth:`ordered`: the first ``n_train`` rows are the training part
        and every code is a training-vocabulary index.
    dictionaries : dict of str → pyarrow.Array
        Each code / bag column's distinct values (U,), sorted: code ``k`` is ``dictionaries[name][k - 1]``.
        Once ordered, the training vocabulary: the values of indices ``1..n``.
    moments : dict of str → (float, float)
        Set by :meth:`ordered`: each numeric column's training mean and std (the standardisation).
    held_out_users : ndarray int32 (N - n_train,) or None
        Set by :meth:`ordered`: the user of each row after the training part, as the log's own
        code, so that users never seen in training stay apart (their training-vocabulary index
        is 0 for all of them). The test users a bootstrap resamples.
    """

    columns: LogColumns
    codes: dict[str, np.ndarray]
    bags: dict[str, np.ndarray]
    numeric: dict[str, np.ndarray]
    labels: np.ndarray
    times: np.ndarray | None
    item_rows: np.ndarray
    items: ItemTable
    sizes: dict[str, int]
    n_train: int | None = None
    unknown_items: tuple[int, object] | None = None
    dictionaries: dict[str, pa.Array] = field(default_factory=dict)
    moments: dict[str, tuple[float, float]] = field(default_factory=dict)
    held_out_users: np.ndarray | None = None
    _device_rows: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def nbytes(self) -> int:
        """Bytes of the per-row arrays (the int table)."""
        arrays = [*self.codes.values(), *self.bags.values(), *self.numeric.values(), self.labels, self.item_rows]
        return sum(a.nbytes for a in arrays) + (0 if self.times is None else self.times.nbytes)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.column(name)

    def column(self, name: str, rows: slice = slice(None)) -> np.ndarray:
        """One column's values of ``rows``: codes, bags, numbers, labels, times; the item column gives item rows."""
        c = self.columns
        if name == c.item:
            return self.item_rows[rows]
        if name == c.label:
            return self.labels[rows]
        if name == c.time and self.times is not None:
            return self.times[rows]
        for kind in (self.codes, self.bags, self.numeric):
            if name in kind:
                return kind[name][rows]
        raise KeyError(name)

    # ------------------------------------------------------------------ order and vocabularies

    def sort_keys(self) -> list[np.ndarray]:
        """The time split's keys, most significant first: time, user, item (each ordered as its values)."""
        if self.times is None:
            raise InputError("the log has no time column to sort by")
        return [self.times, self.codes[self.columns.user], Gathered(self.items.order, self.item_rows)]

    def ordered(self, order: np.ndarray, n_train: int, release: bool = False, times: bool = True) -> "EncodedLog":
        """The rows in ``order`` (N,), with vocabularies and moments of the first ``n_train`` of them.

        Returns a new log: codes are indices ``1..n`` of the values seen in the
        training rows and 0 elsewhere; numbers are standardised with the
        training rows' mean and std. With ``release``, each column leaves this
        log as soon as its ordered copy exists (this log is empty afterwards),
        so the peak is one table and one column rather than two tables. Without
        ``times`` the new log has no time column (once the rows are in time
        order the CTR task never reads it: 8 bytes a row less).
        """
        def take(name: str, store: dict | None = None) -> np.ndarray | None:
            values = getattr(self, name) if store is None else store[name]
            if values is not None and release:
                if store is None:
                    setattr(self, name, None)
                else:
                    del store[name]
            return None if values is None else taken(values, order)

        if not times and release:
            self.times = None  # before any copy: the largest column (int64) goes first
        item_rows = take("item_rows")
        counts = bincount(item_rows[:n_train], minlength=len(self.items.keys))
        codes, bags, sizes, dictionaries = {}, {}, dict(self.sizes), dict(self.dictionaries)
        held_out_users = None
        for source, target in ((self.codes, codes), (self.bags, bags)):
            for name in list(source):
                values = take(name, source)
                if source is self.codes and name == self.columns.user:
                    held_out_users = values[n_train:].copy()
                remap = training_vocabulary(values[:n_train], self.sizes[name] - 1)
                target[name], sizes[name] = remapped(remap, values), int(remap.max()) + 1
                if name in dictionaries:  # the values of indices 1..n, in index order
                    dictionaries[name] = dictionaries[name].filter(pa.array(remap[1:] > 0))
        numeric, stats = {}, {}
        for name in list(self.numeric):
            values = take(name, self.numeric)
            stats[name] = moments(values[:n_train])
            numeric[name] = standardised(values, *stats[name])
        items = _items_vocabulary(self.items, counts)
        sizes.update({name: size for name, size in items.sizes.items()})
        return replace(self, codes=codes, bags=bags, numeric=numeric, labels=take("labels"),
                       times=take("times") if times else None,
                       item_rows=item_rows, items=items, sizes=sizes, n_train=n_train, dictionaries=dictionaries,
                       moments=stats, held_out_users=held_out_users, _device_rows={})

    # ------------------------------------------------------------------ model tensors

    def tensors(self, spec: FeatureSpec, content: Sequence[ItemContent], parts: Sequence["LogPart"],
                device: str | torch.device = "cpu") -> tuple[list[FieldSpec], list[CTRTensors]]:
        """The fields and the tensors of ``parts`` for ``spec`` (a subset of the log's fields) and ``content``.

        The row block is built once per device and shared by every call; the
        item block (M rows) is built per call.
        """
        if self.n_train is None:
            raise InputError("order the log first (EncodedLog.ordered): vocabularies come from the training rows")
        c, d = self.columns, spec.embedding_dim
        declared = (set(c.categorical) | set(c.bag) | set(c.numeric) | set(c.item_categorical) | set(c.item_bag)
                    | set(c.item_numeric))
        unknown = [name for name in (*spec.categorical, *spec.bag, *spec.numeric) if name not in declared]
        if unknown or (spec.user, spec.item, spec.label) != (c.user, c.item, c.label):
            raise InputError(f"the spec asks for columns {unknown or [spec.user, spec.item, spec.label]} that the "
                             "log was not encoded with; encode them")
        rows, row_fields = self._row_block(spec, resolve_device(device))
        item_codes = [self.items.ids, *(self.items.codes[n] for n in spec.categorical if n in self.items.codes)]
        item_bags = [self.items.bags[n] for n in spec.bag if n in self.items.bags]
        item_numeric = [self.items.numeric[n] for n in spec.numeric if n in self.items.numeric]
        items = content_block(content, self.items.keys, np.stack(item_codes, 1), item_bags,
                              np.stack(item_numeric, 1).astype(np.float32) if item_numeric else None)
        fields = _grouped(row_fields + [FieldSpec(c.item, int(self.items.ids.max()) + 1, d)]
                          + [FieldSpec(n, self.sizes[n], d) for n in spec.categorical if n in self.items.codes]
                          + [f for x in content for f in x.fields(d) if f.kind == "categorical"]
                          + [FieldSpec(n, self.sizes[n], d, kind="bag") for n in spec.bag if n in self.items.bags]
                          + [FieldSpec(n, 0, d, kind="numeric", input_dim=1) for n in spec.numeric
                             if n in self.items.numeric]
                          + [f for x in content for f in x.fields(d) if f.kind == "dense"])
        whole = CTRTensors(rows["block"], items, rows["item_rows"], rows["labels"], [f.name for f in fields])
        return fields, [whole.part(slice(p.start, p.stop)) for p in parts]

    def _row_block(self, spec: FeatureSpec, device: torch.device) -> tuple[dict, list[FieldSpec]]:
        """The per-row tensors of ``spec``'s row fields, cached per device and field set."""
        c, d = self.columns, spec.embedding_dim
        names = ([c.user, *(n for n in spec.categorical if n in self.codes)],
                 [n for n in spec.bag if n in self.bags], [n for n in spec.numeric if n in self.numeric])
        key = (device, *map(tuple, names))
        if key not in self._device_rows:
            block = FieldBlock.build(len(self), _side_by_side([self.codes[n] for n in names[0]]),
                                     [self.bags[n] for n in names[1]],
                                     np.stack([self.numeric[n] for n in names[2]], 1) if names[2] else None)
            self._device_rows.clear()  # one row block at a time: a different field set replaces it
            self._device_rows[key] = dict(block=block.to(device), item_rows=torch.from_numpy(self.item_rows).to(device),
                                          labels=torch.from_numpy(self.labels).to(device))
        fields = ([FieldSpec(n, self.sizes[n], d) for n in names[0]]
                  + [FieldSpec(n, self.sizes[n], d, kind="bag") for n in names[1]]
                  + [FieldSpec(n, 0, d, kind="numeric", input_dim=1) for n in names[2]])
        return self._device_rows[key], fields


def _side_by_side(columns: list[np.ndarray]) -> np.ndarray:
    """Columns (N,) as one (N, F) matrix: a view of a single column (the user's codes alone, the common
    case: a log-height copy, 4 bytes a row, saved), else ``np.stack``'s copy."""
    return columns[0].reshape(-1, 1) if len(columns) == 1 else np.stack(columns, 1)


class Gathered:
    """A sort key (N,) read as ``values[index]``, gathered a chunk at a time by
    :func:`rqgmm.data.splits.time_order` (no (N,) copy while the rows are already in time order);
    ``np.asarray`` gives the whole key."""

    def __init__(self, values: np.ndarray, index: np.ndarray) -> None:
        self.values, self.index = values, index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, rows: slice) -> np.ndarray:
        return self.values[self.index[rows]]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self.values[self.index]
        return whole if dtype is None else whole.astype(dtype)


#: Rows gathered at once by :func:`taken`.
REMAP_CHUNK = 1 << 20


def taken(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``values[order]`` (rows of a (N, ...) array) gathered a chunk of rows at a time: an int32 ``order`` is
    widened to numpy's index type one chunk at a time, not as a whole (8 bytes a row) per column."""
    out = np.empty((len(order), *values.shape[1:]), values.dtype)
    for start in range(0, len(order), REMAP_CHUNK):
        np.take(values, order[start:start + REMAP_CHUNK], axis=0, out=out[start:start + REMAP_CHUNK])
    return out


def remapped(remap: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``remap[values]`` (the shape of ``values``), written over ``values`` a chunk of rows at a time when both
    share a dtype (the ordered copy is this log's own: no second column of the log's height); else a new array."""
    if values.dtype != remap.dtype or not values.flags.c_contiguous:
        return np.take(remap, values)
    remap_in_place(values.reshape(-1), remap)  # a view of the contiguous values: they change in place
    return values


def _grouped(fields: list[FieldSpec]) -> list[FieldSpec]:
    """Fields grouped by kind, stably (row fields before item fields within a kind): the batch order."""
    kinds = ("categorical", "bag", "numeric", "dense")
    return sorted(fields, key=lambda f: kinds.index(f.kind))


def _items_vocabulary(items: ItemTable, counts: np.ndarray) -> ItemTable:
    """The item table with training vocabularies: items with ``counts`` (M,) > 0 training rows are seen."""
    seen = counts > 0
    codes, bags, sizes = {}, {}, {}
    for source, target in ((items.codes, codes), (items.bags, bags)):
        for name, values in source.items():
            weights = np.broadcast_to(seen.reshape(-1, *[1] * (values.ndim - 1)), values.shape)
            remap = training_vocabulary(values, items.sizes[name] - 1, weights.astype(np.float64))
            target[name], sizes[name] = np.take(remap, values), int(remap.max()) + 1
    # moments over training rows (each item weighted by its rows), as a join onto the rows would give
    numeric = {name: standardised(v, *moments(v, counts.astype(np.float64))) for name, v in items.numeric.items()}
    ids = (np.cumsum(seen) * seen).astype(np.int32)
    return replace(items, codes=codes, bags=bags, numeric=numeric, sizes=sizes, ids=ids)


@dataclass(frozen=True)
class LogPart:
    """Rows ``start:stop`` of an ordered :class:`EncodedLog` (a view: nothing copied).

    ``part[column]`` gives that column's values of these rows (the item column:
    each row's item-table row).
    """

    log: EncodedLog
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, column: str) -> np.ndarray:
        return self.log.column(column, slice(self.start, self.stop))

    def users(self) -> np.ndarray:
        """Each row's user (len(self),) int32, distinct for every user, seen in training or not.

        ``part[user]`` gives training-vocabulary indices, 0 for every user the
        training part lacks; resampling by those would lump all new users into
        one. Only the parts after the training rows have these codes.
        """
        log = self.log
        if log.held_out_users is None or self.start < log.n_train:
            raise ValueError("the users of held-out rows only: order the log and take a part after training")
        return log.held_out_users[self.start - log.n_train:self.stop - log.n_train]


# ----------------------------------------------------------------------------- encoding


def _numbers(array: pa.Array, name: str) -> np.ndarray:
    """A numeric column as float64 (N,), NaN where missing; Inf or non-numbers are InputErrors."""
    if not (pa.types.is_integer(array.type) or pa.types.is_floating(array.type) or pa.types.is_boolean(array.type)
            or pa.types.is_decimal(array.type) or pa.types.is_null(array.type)):
        raise InputError(f"numeric column {name!r} holds {array.type} values; pass numbers (or declare it "
                         "--categorical)")
    values = array.cast(pa.float64()).to_numpy(zero_copy_only=False)
    if np.isinf(values).any():
        raise InputError(f"numeric column {name!r} holds Inf values; clip or drop them")
    return values


class LogEncoder:
    """Record batches of a log → an :class:`EncodedLog`.

    Parameters
    ----------
    columns : LogColumns
    n_rows : int
        Rows the batches add up to (arrays are allocated once).
    """

    def __init__(self, columns: LogColumns, n_rows: int) -> None:
        self.columns, self.n_rows, self.filled = columns, n_rows, 0
        self.encoders = {name: ColumnEncoder(name, n_rows) for name in (columns.user, columns.item,
                                                                        *columns.categorical)}
        self.encoders.update({name: ColumnEncoder(name, n_rows, bag=True) for name in columns.bag})
        self.numeric = {name: np.empty(n_rows, np.float64) for name in columns.numeric}
        self.labels = np.empty(n_rows, np.int8)
        self.times: np.ndarray | None = None
        self.time_encoder: ColumnEncoder | None = None

    def add(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Encode the next ``batch.num_rows`` rows (the caller has checked labels and times)."""
        c, start, n = self.columns, self.filled, batch.num_rows
        rows = slice(start, start + n)
        for name, encoder in self.encoders.items():
            encoder.add(batch.column(name))
        for name, out in self.numeric.items():
            out[rows] = _numbers(_array(batch.column(name)), name)
        self.labels[rows] = _array(batch.column(c.label)).cast(pa.int8()).to_numpy(zero_copy_only=False)
        if c.time:
            self._add_time(_array(batch.column(c.time)), rows)
        self.filled += n

    def _add_time(self, times: pa.Array, rows: slice) -> None:
        """Numbers and timestamps are their own sort key; other types are encoded to codes of sorted values."""
        if pa.types.is_temporal(times.type):
            times = times.cast(pa.int64()) if times.type.bit_width == 64 else times.cast(pa.int32())
        if self.time_encoder is None and (pa.types.is_integer(times.type) or pa.types.is_floating(times.type)):
            if self.times is None:
                self.times = np.empty(self.n_rows, np.float64 if pa.types.is_floating(times.type) else np.int64)
            self.times[rows] = times.to_numpy(zero_copy_only=False)
            return
        if self.time_encoder is None:
            self.time_encoder = ColumnEncoder(self.columns.time, self.n_rows)
        self.time_encoder.add(times)

    def finish(self, items: ItemTable) -> EncodedLog:
        """The encoded log, its items joined (item rows -1 where ``items`` lacks the item)."""
        c = self.columns
        if self.filled != self.n_rows:
            raise InputError(f"the log has {self.filled} rows, {self.n_rows} expected")
        encoded = {name: encoder.finish() for name, encoder in self.encoders.items()}
        item_codes, item_values = encoded.pop(c.item)
        found = pc.index_in(as_keys(item_values), value_set=pa.array(items.keys.to_numpy(), pa.string()))
        to_row = np.concatenate([[-1], found.fill_null(-1).to_numpy(zero_copy_only=False)]).astype(np.int32)
        unknown_codes = np.flatnonzero(to_row < 0)[1:]  # dictionary codes of items the table lacks
        unknown = None
        if len(unknown_codes):
            missing = np.isin(item_codes, unknown_codes)
            unknown = (int(missing.sum()), item_values[int(item_codes[np.argmax(missing)]) - 1].as_py())
        item_rows = remap_in_place(item_codes, to_row)  # the codes become item rows, in place
        times = self.time_encoder.finish()[0] if self.time_encoder is not None else self.times
        codes = {n: encoded[n][0] for n in (c.user, *c.categorical)}
        bags = {n: encoded[n][0] for n in c.bag}
        sizes = {n: len(encoded[n][1]) + 1 for n in (c.user, *c.categorical, *c.bag)}
        sizes.update(items.sizes)
        return EncodedLog(c, codes, bags, self.numeric, self.labels, times, item_rows, items, sizes,
                          unknown_items=unknown, dictionaries={n: encoded[n][1] for n in sizes if n in encoded})


def _array(column) -> pa.Array:
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return column.dictionary_decode() if pa.types.is_dictionary(column.type) else column
