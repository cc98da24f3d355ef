"""Freed memory handed back to the system between the stages of a long command.

glibc keeps the pages of freed blocks in its heap for reuse: its mmap threshold rises to the largest block
freed (up to 32 MiB), so the many arrays of a few MiB that reading and splitting a log make and drop are
carved from the heap, and their pages stay resident after they are freed. Arrow's allocator keeps freed
pages too. Measured at the CTR stage of a 5e7-row log on the CPU: 282 MiB of the heap was free yet resident
(``mallinfo2``), and ``malloc_trim(0)`` brought RssAnon from 1,764 to 1,512 MiB. :func:`release_free_memory`
does that, and asks Arrow's pool to release its unused pages; where neither exists (not glibc, no pyarrow)
it does nothing. Live data is never touched. In a process that has used a GPU, torch's cache of freed pinned
host blocks (the staging buffers of uploads) is emptied too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim") if name else None
    except (OSError, AttributeError):
        return None


def release_free_memory() -> None:
    """Return the free pages of the C heap (glibc), of Arrow's memory pool and of torch's pinned host cache (once
    CUDA is in use; torch is never imported here) to the system."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        _empty_host_cache(torch)
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
    try:
        import pyarrow
    except ImportError:
        return
    pyarrow.default_memory_pool().release_unused()


def _empty_host_cache(torch) -> None:
    """torch's cache of freed pinned host blocks returned to the system, through whichever call this torch has:
    ``torch.accelerator.empty_host_cache`` (2.13), its C binding, or the CUDA-only ``torch._C._host_emptyCache``
    (the GPU hosts' 2.11); nothing where none is."""
    calls = ((getattr(torch, "accelerator", None), "empty_host_cache"), (torch._C, "_accelerator_emptyHostCache"),
             (torch._C, "_host_emptyCache"))
    for owner, name in calls:
        empty = getattr(owner, name, None)
        if empty is not None:
            empty()
            return
