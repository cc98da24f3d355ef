"""Columns to int32 codes, once, in C++: streamed dictionary encoding and training vocabularies.

A :class:`ColumnEncoder` takes a column chunk by chunk (pyarrow record
batches), dictionary-encodes each chunk and merges its dictionary into the
distinct values seen so far (in first-seen order, so earlier codes keep their
place); at the end those values are sorted and the codes remapped in place:
codes ``1..U`` in the order of the values (so a sort by code is a sort by
value), ``0`` left for padding. No Python object is made per row, and only
the U distinct values are held beside the codes (keeping every chunk's own
dictionary to the end held about 0.6 values a row at 10^6 users).

:func:`training_vocabulary` then turns such codes into a vocabulary of the
training rows only: values seen there get ``1..n``, every other value ``0``
(one row for everything never seen in training, as the models expect).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rqgmm.errors import InputError
from rqgmm.runtime.counting import bincount


class ColumnEncoder:
    """One column's chunks → int32 codes of one sorted dictionary.

    Parameters
    ----------
    name : str
        The column, for messages.
    n_rows : int
        Rows the chunks add up to (the output is allocated once).
    bag : bool
        The column holds a list per row (a bag): its values are encoded and
        each row's list is kept (null lists are empty).
    """

    def __init__(self, name: str, n_rows: int, bag: bool = False) -> None:
        self.name, self.n_rows, self.bag = name, n_rows, bag
        self.local = np.empty(0 if bag else n_rows, np.int32)
        self.bag_values: list[np.ndarray] = []
        self.lengths = np.zeros(n_rows if bag else 0, np.int64)
        self.seen: pa.Array | None = None  # the distinct values so far, in first-seen order
        self.integers: IntegerPlaces | None = None  # or, while it can, the same held as a lookup table
        self.filled = 0

    def add(self, chunk: pa.Array) -> None:
        """Dictionary-encode the next ``len(chunk)`` rows."""
        chunk = chunk.combine_chunks() if isinstance(chunk, pa.ChunkedArray) else chunk
        if pa.types.is_dictionary(chunk.type):
            chunk = chunk.dictionary_decode()
        n, start = len(chunk), self.filled
        if self.bag:
            if not pa.types.is_list(chunk.type) and not pa.types.is_large_list(chunk.type):
                raise InputError(f"bag column {self.name!r} must hold a list per row, got {chunk.type}; "
                                 "pass it with --categorical, or store lists")
            self.lengths[start:start + n] = pc.list_value_length(chunk).fill_null(0).to_numpy()
            chunk = chunk.flatten()
        elif pa.types.is_list(chunk.type) or pa.types.is_large_list(chunk.type) or pa.types.is_struct(chunk.type):
            raise InputError(f"column {self.name!r} holds {chunk.type} values, not one value per row; "
                             "pass a list column with --bag")
        indices = self._places(chunk)
        if self.bag:
            self.bag_values.append(indices)
        else:
            self.local[start:start + n] = indices
        self.filled += n

    def _places(self, chunk: pa.Array) -> np.ndarray:
        """Each row's place (int32 (n,)) among the values seen so far: by :class:`IntegerPlaces` while the
        column holds integers of a small range, else by dictionary-encoding the chunk."""
        if self.seen is None and (self.integers is not None or IntegerPlaces.accepts(chunk)):
            self.integers = self.integers or IntegerPlaces(chunk.type)
            found = self.integers.places(chunk)
            if found is not None:
                return found
            self.seen, self.integers = self.integers.seen(), None  # hashing from here on, the places kept
        encoded = pc.dictionary_encode(chunk, null_encoding="encode")
        return self._seen_places(encoded.dictionary)[encoded.indices.to_numpy(zero_copy_only=False)]

    def _seen_places(self, dictionary: pa.Array) -> np.ndarray:
        """Each value's place (int32 (d,)) among the values seen so far, ``dictionary``'s new ones appended."""
        if self.seen is None:
            self.seen = dictionary
            return np.arange(len(dictionary), dtype=np.int32)
        self.seen = pc.unique(pa.concat_arrays([self.seen, dictionary]))  # keeps the first-seen order
        return pc.index_in(dictionary, value_set=self.seen, skip_nulls=False).to_numpy(
            zero_copy_only=False).astype(np.int32)

    def finish(self) -> tuple[np.ndarray, pa.Array]:
        """The codes and their dictionary.

        Returns
        -------
        codes : ndarray int32, shape (N,), or (N, G) padded with 0 for a bag
            ``1..U``: one more than the value's position in ``uniques``.
        uniques : pyarrow.Array, shape (U,)
            The distinct values, sorted (a null, if any, last).
        """
        if self.filled != self.n_rows:
            raise InputError(f"column {self.name!r}: {self.filled} rows encoded, {self.n_rows} expected")
        if self.integers is not None:
            self.seen, self.integers = self.integers.seen(), None
        seen = self.seen if self.seen is not None else pa.array([], pa.null())
        order = pc.array_sort_indices(seen).to_numpy(zero_copy_only=False)
        to_global = np.empty(len(seen), np.int32)
        to_global[order] = np.arange(1, len(seen) + 1, dtype=np.int32)  # a seen place -> 1 + its sorted place
        if not self.bag:
            codes = remap_in_place(self.local, to_global)
        else:
            values = to_global[np.concatenate(self.bag_values)] if self.bag_values else np.zeros(0, np.int32)
            codes = padded(values, self.lengths)
        self.local, self.bag_values, self.seen = np.empty(0, np.int32), [], None
        return codes, seen.take(order)


#: The widest range of integers :class:`IntegerPlaces` holds a table for (int32 places: 64 MiB).
LOOKUP_SPAN = 1 << 24


class IntegerPlaces:
    """First-seen places of integer values whose range (max - min + 1) stays within :data:`LOOKUP_SPAN`.

    The dictionary path hashes every chunk's distinct values against all values seen so far (at 10^6 users,
    about 10^6 a chunk: 11.6 s of a 5e7-row log's 36 s read on a 2-core CPU). Integer ids of a compact range
    (user and item numbers) are placed through one int32 table over the range instead; a chunk's new values
    take the next places in their order of first appearance, as the dictionary path gives them.
    """

    def __init__(self, type_: pa.DataType) -> None:
        self.type, self.low, self.table, self.firsts, self.count = type_, 0, np.empty(0, np.int32), [], 0

    @staticmethod
    def accepts(chunk: pa.Array) -> bool:
        """Non-empty integers without nulls that int64 holds."""
        t = chunk.type
        return (len(chunk) > 0 and chunk.null_count == 0 and pa.types.is_integer(t)
                and (pa.types.is_signed_integer(t) or t.bit_width < 64))

    def places(self, chunk: pa.Array) -> np.ndarray | None:
        """The chunk's places (int32 (n,)); None (nothing changed) for a chunk this table cannot take."""
        if chunk.type != self.type or not self.accepts(chunk):
            return None
        values = chunk.to_numpy().astype(np.int64, copy=False)
        low = min(int(values.min()), self.low) if self.count else int(values.min())
        high = max(int(values.max()), self.low + len(self.table) - 1) if self.count else int(values.max())
        if high - low + 1 > LOOKUP_SPAN:
            return None
        if low != self.low or high - low + 1 != len(self.table):
            table = np.full(high - low + 1, -1, np.int32)
            table[self.low - low:self.low - low + len(self.table)] = self.table
            self.table, self.low = table, low
        found = self.table[values - low]
        new = found < 0
        if new.any():
            distinct, first = np.unique(values[new], return_index=True)
            ordered = distinct[np.argsort(first, kind="stable")]  # by first appearance in the chunk
            self.table[ordered - low] = np.arange(self.count, self.count + len(ordered), dtype=np.int32)
            self.firsts.append(ordered)
            self.count += len(ordered)
            found = self.table[values - low]
        return found

    def seen(self) -> pa.Array:
        """The values placed so far, in first-seen order (the dictionary path's ``seen``)."""
        values = np.concatenate(self.firsts) if self.firsts else np.zeros(0, np.int64)
        return pa.array(values, type=self.type)


#: Rows remapped per step by :func:`remap_in_place` (its only temporary: 4M int32, 16 MB).
REMAP_ROWS = 1 << 22


def remap_in_place(codes: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``codes[:] = table[codes]`` (N,) in steps of :data:`REMAP_ROWS` (``np.take(out=codes)`` copies all N)."""
    for start in range(0, len(codes), REMAP_ROWS):
        part = codes[start:start + REMAP_ROWS]
        part[:] = table[part]
    return codes


def padded(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Ragged rows (flat ``values``, ``lengths`` (N,)) as a matrix (N, max(lengths, 1)) padded with 0."""
    width = int(lengths.max()) if len(lengths) else 0
    matrix = np.zeros((len(lengths), max(width, 1)), np.int32)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    starts = np.cumsum(lengths) - lengths
    matrix[rows, np.arange(len(values)) - starts[rows]] = values
    return matrix


def encode_column(name: str, values, bag: bool = False) -> tuple[np.ndarray, pa.Array]:
    """:class:`ColumnEncoder` on one in-memory column (a pyarrow array, or anything ``pa.array`` takes)."""
    array = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else as_arrow(values, name)
    encoder = ColumnEncoder(name, len(array), bag=bag)
    encoder.add(array)
    return encoder.finish()


def as_arrow(values, name: str) -> pa.Array:
    """A pandas / numpy column as a pyarrow array; mixed Python types are an InputError naming the column."""
    try:
        return pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InputError(f"column {name!r} mixes value types ({str(exc).splitlines()[0]}); "
                         "give it one type") from None


def training_vocabulary(codes: np.ndarray, n_codes: int, weights: np.ndarray | None = None) -> np.ndarray:
    """The map from dictionary codes to a vocabulary of the values present in ``codes``.

    Parameters
    ----------
    codes : ndarray of int, any shape
        Codes ``0..n_codes`` of the training rows (0 is padding, never a value).
    n_codes : int
        The dictionary's size U.
    weights : ndarray, optional
        Per entry of ``codes``; an entry with weight 0 does not count as seen.

    Returns
    -------
    ndarray int32, shape (U + 1,)
        ``remap[code]`` in ``1..n`` for the n values seen (in code order), 0 otherwise.
    """
    counts = (bincount(codes, minlength=n_codes + 1) if weights is None
              else np.bincount(codes.ravel(), weights=weights.ravel(), minlength=n_codes + 1))
    seen = counts > 0
    seen[0] = False
    return (np.cumsum(seen) * seen).astype(np.int32)


def moments(values: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, float]:
    """Mean and standard deviation of the finite ``values`` (N,) (weighted), std 1 where it is 0 or undefined."""
    finite = np.isfinite(values) & (True if weights is None else weights > 0)
    if not finite.any():
        return 0.0, 1.0
    w = None if weights is None else weights[finite]
    mean = float(np.average(values[finite], weights=w))
    std = float(np.sqrt(np.average((values[finite] - mean) ** 2, weights=w)))
    return mean, std if std > 0 else 1.0


def standardised(values: np.ndarray, mean: float, std: float) -> np.ndarray:
    """``(values - mean) / std`` as float32 (N,), 0 where missing."""
    return np.nan_to_num((values - mean) / std, nan=0.0).astype(np.float32)
