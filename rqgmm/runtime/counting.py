"""Counts of log-sized integer arrays in bounded memory.

``np.bincount`` converts its input to the platform integer first: an int32 array of
N rows becomes an 8N-byte temporary (320 MB for 40M training rows) before any
counting. :func:`bincount` counts a chunk at a time and adds the counts, so the
temporary is one chunk's; integer counts are exact, so the result equals
``np.bincount``'s.
"""

from __future__ import annotations

import numpy as np

#: Entries converted and counted at once (32 MiB of int64).
COUNT_CHUNK = 1 << 22


def bincount(values: np.ndarray, minlength: int = 0) -> np.ndarray:
    """``np.bincount(values, minlength=minlength)`` (int64 counts) of non-negative integers ``values`` (N,),
    read :data:`COUNT_CHUNK` entries at a time."""
    values = np.asarray(values).ravel()
    if len(values) <= COUNT_CHUNK:
        return np.bincount(values, minlength=minlength)
    length = max(minlength, int(values.max()) + 1)
    counts = np.zeros(length, np.int64)
    for start in range(0, len(values), COUNT_CHUNK):
        counts += np.bincount(values[start:start + COUNT_CHUNK], minlength=length)
    return counts
