"""Freed heap memory handed back between stages (rqgmm.runtime.heap): RssAnon falls, live data is untouched."""

import numpy as np
import pytest

from rqgmm.evaluate.stages import rss_anon_mb
from rqgmm.runtime.heap import _malloc_trim, release_free_memory


@pytest.mark.skipif(_malloc_trim() is None or rss_anon_mb() is None, reason="needs glibc's malloc_trim and /proc")
def test_freed_heap_blocks_leave_the_resident_set_and_live_arrays_keep_their_values():
    rng = np.random.default_rng(0)
    big = np.ones(30 << 17)
    del big  # a freed 30 MiB block raises glibc's mmap threshold, as reading a log does
    kept, dropped = [], []
    for _ in range(200):  # so 1 MiB blocks come from the heap, each pinned in place by a small live one
        dropped.append(np.ones(1 << 17))
        kept.append(rng.normal(size=64))
    copies = [k.copy() for k in kept]
    del dropped
    before = rss_anon_mb()
    release_free_memory()
    assert rss_anon_mb() < before - 100  # most of the 200 MiB freed goes back
    assert all(np.array_equal(k, c) for k, c in zip(kept, copies))
