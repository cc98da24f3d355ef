"""Where a process's fixed host memory comes from: RssAnon after each step of one fresh process.

    python -m rqgmm.bench.host_memory --device cuda                # a GPU host (the figure of issue 28)
    python -m rqgmm.bench.host_memory --device cpu --items 20000   # the same steps on the CPU

The steps, in order: ``import torch``; the device's context (a one-element tensor there); a first matrix
product; the tokenizers imported; item vectors X (``--items`` x ``--dim`` float32, on the host); a first RQ-GMM
fit on the device (``--levels`` x ``--codebook-size``); its encoding; an RQ-KMeans fit; and
:func:`rqgmm.runtime.heap.release_free_memory`. After each: RssAnon (MiB), the part of it in the C heap
(``[heap]`` in ``/proc/self/smaps``), and torch's pinned host cache (reserved MiB, on CUDA). On an H100 with
torch 2.11 the first GPU fit added about 530 MB that later fits did not add and no release returned (BENCHMARKS.md,
2026-12-07): a fixed cost beside the data that ``bench.scale_memory``'s ratio counts.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

from rqgmm.console import Parser, exit_status, int_in, setup_logging
from rqgmm.evaluate.stages import rss_anon_mb

logger = logging.getLogger("rqgmm.bench.host_memory")  # by name: under "rqgmm" also when run as __main__

SMAPS = Path("/proc/self/smaps")


def heap_mb() -> float | None:
    """The anonymous memory (MiB) of this process's C heap mapping; None where /proc is absent."""
    try:
        lines = SMAPS.read_text().splitlines()
    except OSError:
        return None
    total, in_heap = 0, False
    for line in lines:
        fields = line.split()
        if "-" in fields[0] and not fields[0].endswith(":"):  # a mapping's header line
            in_heap = fields[-1] == "[heap]"
        elif in_heap and fields[0] == "Anonymous:":
            total += int(fields[1])
    return total / 1024


def pinned_mb() -> float | None:
    """torch's pinned host cache, reserved (MiB), once CUDA is in use; else None."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return None
    stats = getattr(torch.cuda, "host_memory_stats", lambda: {})()
    return stats.get("reserved_bytes.current", 0) / 2**20


def steps(device: str, items: int, dim: int, levels: int, codebook_size: int) -> list[tuple[str, Callable]]:
    """The steps, each a name and a call; they share one namespace (the tensors and models stay alive)."""
    held: dict = {}

    def context():
        import torch

        from rqgmm.runtime.device import resolve_device

        held["device"] = resolve_device(device, what="--device")  # a device this machine lacks: one line, exit 2
        torch.ones(1, device=held["device"])

    def product():
        import torch

        on = held["device"]
        (torch.ones(64, 64, device=on) @ torch.ones(64, 64, device=on)).sum().item()

    def tokenizers():
        from rqgmm.tokenizers.base import tokenizer_class

        held["class"] = tokenizer_class

    def vectors():
        import numpy as np

        held["X"] = np.random.default_rng(0).standard_normal((items, dim)).astype(np.float32)

    def fit(method: str) -> Callable:
        def run():
            held[method] = held["class"](method)(levels=levels, codebook_size=codebook_size, device=held["device"],
                                                 random_state=0, progress=False).fit(held["X"])
        return run

    def release():
        from rqgmm.runtime.heap import release_free_memory

        release_free_memory()

    return [("import torch", lambda: __import__("torch")),
            (f"{device} context", context), ("first matrix product", product), ("tokenizers imported", tokenizers),
            (f"X {items:,} x {dim} on the host", vectors), ("first RQ-GMM fit", fit("rqgmm")),
            ("its encoding", lambda: held["rqgmm"].encode(held["X"])), ("an RQ-KMeans fit", fit("rqkmeans")),
            ("release_free_memory", release)]


def measure(device: str, items: int, dim: int, levels: int, codebook_size: int) -> list[dict]:
    """One row per step: its name, RssAnon, the heap's part and the pinned cache (MiB; None where unknown)."""
    rows = [dict(step="start", rss_anon=rss_anon_mb(), heap=heap_mb(), pinned=None)]
    for name, work in steps(device, items, dim, levels, codebook_size):
        work()
        rows.append(dict(step=name, rss_anon=rss_anon_mb(), heap=heap_mb(), pinned=pinned_mb()))
    return rows


def main(argv: list[str] | None = None) -> int:
    """The exit status: 0, or 2 with one line."""
    parser = Parser(prog="python -m rqgmm.bench.host_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="torch device of the fits (default cuda)")
    parser.add_argument("--items", type=int_in(2), default=200_000, help="rows of X (default 200000)")
    parser.add_argument("--dim", type=int_in(1), default=96, help="columns of X (default 96)")
    parser.add_argument("--levels", type=int_in(1), default=3)
    parser.add_argument("--codebook-size", type=int_in(2), default=256)

    def run() -> None:
        args = parser.parse_args(argv)
        setup_logging(False)
        shown = lambda v: "-" if v is None else f"{v:,.0f}"  # noqa: E731
        rows = measure(args.device, args.items, args.dim, args.levels, args.codebook_size)  # bad input: one line
        logger.info("%-32s %10s %10s %10s", "step", "RssAnon MB", "heap MB", "pinned MB")
        for row in rows:
            logger.info("%-32s %10s %10s %10s", row["step"], shown(row["rss_anon"]), shown(row["heap"]),
                        shown(row["pinned"]))

    return exit_status(run)


if __name__ == "__main__":
    sys.exit(main())
