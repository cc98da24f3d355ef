"""Vocabularies fitted on training rows: raw values → indices 1..n; 0 = never seen (OOV / padding).

Values are compared as strings (the id 3 and the id "3" are one value), cast
and looked up by pyarrow in C++, never one Python string per row.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def as_keys(values) -> pa.Array:
    """Values as a pyarrow string array, shape (N,): the keys vocabularies compare."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        try:
            values = pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed Python types: compare their str()
            values = pa.array(np.asarray(values).astype(str))
    return values if pa.types.is_string(values.type) else values.cast(pa.string())


class Vocabulary:
    """Raw values → indices 1..n in order of first appearance; 0 for values never seen.

    Parameters
    ----------
    values : array-like, shape (N,)
        The values seen in training (compared as strings).
    """

    def __init__(self, values) -> None:
        self.keys = pc.unique(as_keys(values))

    def __len__(self) -> int:
        """Table size, the OOV row 0 included."""
        return len(self.keys) + 1

    def lookup(self, values) -> np.ndarray:
        """Indices of ``values``, shape (N,) int32; 0 for values never seen."""
        found = pc.index_in(as_keys(values), value_set=self.keys, skip_nulls=False)
        return (found.fill_null(-1).to_numpy(zero_copy_only=False) + 1).astype(np.int32)

    def to_list(self) -> list:
        return self.keys.to_pylist()

    @classmethod
    def from_list(cls, values: list) -> "Vocabulary":
        return cls(pa.array(values, pa.string()))
