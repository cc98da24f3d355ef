"""runtime.counting.bincount: np.bincount's counts, a chunk at a time."""

from __future__ import annotations

import numpy as np
import pytest

from rqgmm.runtime import counting


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8])
def test_chunked_counts_equal_numpys_and_leave_the_input_alone(monkeypatch, dtype):
    monkeypatch.setattr(counting, "COUNT_CHUNK", 7)  # many chunks, a partial last one
    rng = np.random.default_rng(1)
    for n, high, minlength in ((0, 1, 0), (0, 1, 5), (1, 3, 0), (50, 9, 0), (50, 9, 30), (301, 40, 12)):
        values = rng.integers(0, high, n).astype(dtype)
        kept = values.copy()
        got = counting.bincount(values, minlength=minlength)
        assert np.array_equal(got, np.bincount(values, minlength=minlength)) and got.dtype == np.int64
        assert np.array_equal(values, kept)
