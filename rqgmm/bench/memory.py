"""Out-of-core benchmark: fit a memory-mapped .npy larger than the budget, record peak RssAnon.

    python -m rqgmm.bench.memory [--n 2000000] [--d 128] [--k 256] [--max-iter 3] [--dir /tmp/rqgmm-ooc]

Writes an (n, d) float32 mixture to ``DIR/x.npy`` (chunk by chunk), runs
``rqgmm fit`` on it in a child process, polls the child's anonymous resident
memory (RssAnon in /proc/PID/status; the memory-mapped file's pages are
file-backed and not counted there) every 50 ms, and prints the peak. Linux only.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


def write_mixture(path: Path, n: int, d: int, seed: int = 0, chunk: int = 262_144) -> None:
    """An (n, d) float32 Gaussian mixture written to ``path`` without holding it in memory."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (512, d)).astype(np.float32)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        out[start : start + m] = centres[rng.integers(0, len(centres), m)] + rng.normal(0, 1, (m, d)).astype(np.float32)
    out.flush()
    del out


def rss_anon_kib(pid: int) -> int | None:
    """The process's RssAnon in KiB, or None once it has exited."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2_000_000)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--k", type=int, default=256)
    parser.add_argument("--levels", type=int, default=1)
    parser.add_argument("--max-iter", type=int, default=3)
    parser.add_argument("--dir", default="/tmp/rqgmm-ooc")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    work = Path(args.dir)
    work.mkdir(parents=True, exist_ok=True)
    data = work / f"x-{args.n}x{args.d}.npy"
    if not data.exists():
        write_mixture(data, args.n, args.d)
    cmd = [sys.executable, "-m", "rqgmm", "fit", str(data), "--levels", str(args.levels), "--codebook-size",
           str(args.k), "--max-iter", str(args.max_iter), "--quiet", "--out", str(work / "model")]
    start, peak = time.perf_counter(), 0
    proc = subprocess.Popen(cmd)
    while proc.poll() is None:
        peak = max(peak, rss_anon_kib(proc.pid) or 0)
        time.sleep(0.05)
    logger.info("file %s: %.2f GB; rqgmm fit exit %d in %.0f s; peak RssAnon %.0f MB",
                data, data.stat().st_size / 1e9, proc.returncode, time.perf_counter() - start, peak / 1024)


if __name__ == "__main__":
    main()
