"""Seconds and peak host memory (RssAnon) per stage of an evaluate: read and encode, split, tokenizers, the
IDs' click-log diagnostics, CTR runs, intervals, report.

A daemon thread polls ``/proc/self/statm`` every 20 ms while a :class:`StageMeter` is open; a stage's peak is
the largest RssAnon seen while it ran (statm's resident pages less its file-backed and shared ones: the
kernel's RssAnon, read without formatting the whole of ``/proc/self/status``). Where ``/proc`` is absent (not
Linux) only seconds are kept.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from rqgmm.runtime.heap import release_free_memory

STATM = Path("/proc/self/statm")
PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20 if hasattr(os, "sysconf") else 0.0
_active: list["StageMeter"] = []


def rss_anon_mb() -> float | None:
    """This process's RssAnon in MiB; None where /proc is absent."""
    try:
        resident, shared = STATM.read_bytes().split()[1:3]
    except (OSError, ValueError):
        return None
    return (int(resident) - int(shared)) * PAGE_MB


class StageMeter:
    """Seconds and peak RssAnon (MiB) per named stage; a context manager that polls while open."""

    def __init__(self, every_s: float = 0.02) -> None:
        self.stage, self.peaks, self.seconds, self.every_s = None, {}, {}, every_s
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> "StageMeter":
        if rss_anon_mb() is not None:
            self.thread.start()
        _active.append(self)
        return self

    def __exit__(self, *exc) -> None:
        _active.remove(self)
        self.done.set()
        if self.thread.is_alive():
            self.thread.join()

    def _poll(self) -> None:
        while not self.done.wait(self.every_s):
            self.sample()

    def sample(self) -> None:
        now = rss_anon_mb()
        if self.stage is not None and now is not None:
            self.peaks[self.stage] = round(max(self.peaks.get(self.stage, 0.0), now), 1)

    def run(self, stage: str, work: Callable):
        """``work()`` measured as ``stage`` (a stage run twice adds its seconds; its peak is the larger). The
        memory the stage freed goes back to the system as it ends (:func:`release_free_memory`): the next
        stage starts from what is alive, not from the heap's high-water mark."""
        previous, self.stage = self.stage, stage
        self.sample()
        start = time.perf_counter()
        try:
            return work()
        finally:
            release_free_memory()
            self.seconds[stage] = round(self.seconds.get(stage, 0.0) + time.perf_counter() - start, 2)
            self.sample()
            self.stage = previous

    def table(self) -> dict[str, dict]:
        """Each stage's seconds and peak RssAnon (MiB; absent off Linux), in the order they ran."""
        return {s: dict(seconds=v, **({"peak_rss_anon_mb": self.peaks[s]} if s in self.peaks else {}))
                for s, v in self.seconds.items()}


def measured(stage: str, work: Callable):
    """``work()`` measured as ``stage`` by the innermost open meter (just ``work()`` without one)."""
    return _active[-1].run(stage, work) if _active else work()


def stage_words(table: dict[str, dict]) -> str:
    """"read+encode 1.2 s, peak RssAnon 310 MB; split 0.1 s, ..." from :meth:`StageMeter.table`."""
    return "; ".join(f"{stage} {v['seconds']:.1f} s" + (f", peak RssAnon {v['peak_rss_anon_mb']:,.0f} MB"
                                                          if "peak_rss_anon_mb" in v else "")
                     for stage, v in table.items())
