"""Freed heap memory handed back between stages (rqgmm.runtime.heap): RssAnon falls, live data is untouched."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rqgmm.evaluate.stages import rss_anon_mb
from rqgmm.runtime.heap import _malloc_trim, release_free_memory

#: Run in a fresh interpreter: where freed blocks land in the heap depends on everything the process did before.
PROBE = """
import json
import numpy as np
from rqgmm.evaluate.stages import rss_anon_mb
from rqgmm.runtime.heap import release_free_memory
big = np.ones(30 << 17)
del big  # a freed 30 MiB block raises glibc's mmap threshold, as reading a log does
rng = np.random.default_rng(0)
kept, dropped = [], []
for _ in range(200):  # so 1 MiB blocks come from the heap, each pinned in place by a small live one
    dropped.append(np.ones(1 << 17))
    kept.append(rng.normal(size=64))
copies = [k.copy() for k in kept]
del dropped
before = rss_anon_mb()
release_free_memory()
print(json.dumps(dict(before=before, after=rss_anon_mb(),
                      kept=all(np.array_equal(k, c) for k, c in zip(kept, copies)))))
"""


@pytest.mark.skipif(_malloc_trim() is None or rss_anon_mb() is None, reason="needs glibc's malloc_trim and /proc")
def test_freed_heap_blocks_leave_the_resident_set_and_live_arrays_keep_their_values():
    found = json.loads(subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                                      cwd=Path(__file__).resolve().parents[1]).stdout)
    assert found["after"] < found["before"] - 100  # most of the 200 MiB freed goes back
    assert found["kept"]


def test_a_torch_without_empty_host_cache_is_left_alone(monkeypatch):
    """torch 2.11 (the GPU hosts' build) has neither ``torch.accelerator.empty_host_cache`` nor its C binding, only
    the CUDA-only ``torch._C._host_emptyCache``: the release must not raise there (it did, ending every GPU
    ``evaluate`` at its first stage), must call the first of the three a torch has, and none where it has none."""
    import sys
    from types import SimpleNamespace

    called = []
    cuda = SimpleNamespace(is_initialized=lambda: True)
    hit = lambda n: lambda: called.append(n)  # noqa: E731
    for accelerator, binding in ((SimpleNamespace(), SimpleNamespace()),
                                 (SimpleNamespace(), SimpleNamespace(_host_emptyCache=hit(3))),
                                 (SimpleNamespace(), SimpleNamespace(_accelerator_emptyHostCache=hit(2),
                                                                     _host_emptyCache=hit(3))),
                                 (SimpleNamespace(empty_host_cache=hit(1)), SimpleNamespace(_host_emptyCache=hit(3)))):
        monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda, accelerator=accelerator, _C=binding))
        release_free_memory()
    assert called == [3, 2, 1]
