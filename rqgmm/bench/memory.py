"""Out-of-core benchmark: the command line on a memory-mapped .npy, with the child's peak RssAnon.

    python -m rqgmm.bench.memory [--n 2000000] [--d 128] [--k 256] [--max-iter 3] [--dir /tmp/rqgmm-ooc]
    python -m rqgmm.bench.memory --encode --n 100000000 --d 256 --dtype float16 --levels 2 \\
        --sample 1000000 --device cuda --dir /big/disk

Writes an (n, d) Gaussian mixture to ``DIR/x-NxD-DTYPE.npy`` chunk by chunk
(drawn with torch on ``--device``, so a GPU writes 10^8 rows quickly), then
runs the command line on it in a child process and polls the child's anonymous
resident memory (RssAnon in /proc/PID/status; the memory-mapped file's pages
are file-backed page cache and not counted there) every 50 ms. Linux only.

- fit (default): ``rqgmm fit`` on the whole file; prints its peak.
- ``--encode``: ``rqgmm fit --sample`` (timed, not polled), then ``rqgmm
  encode`` of the whole file to ``codes.npy`` (polled), then checks the
  streamed codes against the library's encoding of ``--check-rows`` rows
  drawn from the file.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)


def write_mixture(path: Path, n: int, d: int, *, dtype: str = "float32", device: str = "cpu", seed: int = 0,
                  chunk: int = 1 << 20) -> None:
    """An (n, d) Gaussian mixture (512 centres of scale 3, unit noise) written to ``path`` chunk by chunk.

    Drawn with a torch generator on ``device``; only one chunk is in host memory at a time.
    """
    g = torch.Generator(device=device).manual_seed(seed)
    centres = 3.0 * torch.randn(512, d, generator=g, device=device)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.dtype(dtype), shape=(n, d))
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        pick = torch.randint(0, len(centres), (m,), generator=g, device=device)
        rows = centres[pick] + torch.randn(m, d, generator=g, device=device)
        out[start : start + m] = rows.to(getattr(torch, dtype)).cpu().numpy()
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


def run_polled(args: list[str]) -> tuple[int, float, float]:
    """Run ``python -m rqgmm ARGS``: (exit status, seconds, peak RssAnon in MB polled every 50 ms)."""
    start, peak = time.perf_counter(), 0
    proc = subprocess.Popen([sys.executable, "-m", "rqgmm", *args])
    while proc.poll() is None:
        peak = max(peak, rss_anon_kib(proc.pid) or 0)
        time.sleep(0.05)
    return proc.returncode, time.perf_counter() - start, peak / 1024


def data_file(work: Path, n: int, d: int, dtype: str, device: str) -> Path:
    """The mixture file for these sizes, written once and reused."""
    data = work / f"x-{n}x{d}-{dtype}.npy"
    if not data.exists():
        start = time.perf_counter()
        write_mixture(data, n, d, dtype=dtype, device=device)
        logger.info("wrote %s (%.2f GB) in %.0f s", data, data.stat().st_size / 1e9, time.perf_counter() - start)
    return data


def check_codes(model: Path, data: Path, codes_path: Path, rows: int, device: str) -> float:
    """Share of ``rows`` seeded random rows whose streamed codes equal the library's encoding of them."""
    from rqgmm import load

    X, codes = np.load(data, mmap_mode="r"), np.load(codes_path, mmap_mode="r")
    if codes.shape[0] != X.shape[0]:
        raise SystemExit(f"{codes_path} holds {codes.shape[0]} rows of codes for {X.shape[0]} rows of data")
    pick = np.sort(np.random.default_rng(1).choice(X.shape[0], size=min(rows, X.shape[0]), replace=False))
    library = np.asarray(load(model, device=device).encode(np.asarray(X[pick])))
    return float((library == codes[pick]).all(1).mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2_000_000)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--k", type=int, default=256)
    parser.add_argument("--levels", type=int, default=1)
    parser.add_argument("--max-iter", type=int, default=3)
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                        help="the file's dtype (float16 halves the disk a 10^8-row file needs)")
    parser.add_argument("--device", default="cpu", help="where the data are drawn and the command line computes")
    parser.add_argument("--encode", action="store_true", help="measure streaming encode instead of fit")
    parser.add_argument("--sample", type=int, default=1_000_000, help="rows the --encode model is fitted on")
    parser.add_argument("--check-rows", type=int, default=1_000_000,
                        help="rows whose streamed codes are checked against the library's (0: no check)")
    parser.add_argument("--dir", default="/tmp/rqgmm-ooc")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    work = Path(args.dir)
    work.mkdir(parents=True, exist_ok=True)
    data = data_file(work, args.n, args.d, args.dtype, args.device)
    fit = ["fit", str(data), "--levels", str(args.levels), "--codebook-size", str(args.k), "--max-iter",
           str(args.max_iter), "--device", args.device, "--quiet", "--out", str(work / "model")]
    if not args.encode:
        code, seconds, peak = run_polled(fit)
        logger.info("file %s: %.2f GB; rqgmm fit exit %d in %.0f s; peak RssAnon %.0f MB",
                    data, data.stat().st_size / 1e9, code, seconds, peak)
        return
    code, seconds, _ = run_polled([*fit, "--sample", str(args.sample)])
    logger.info("rqgmm fit --sample %d: exit %d in %.1f s", args.sample, code, seconds)
    codes = work / "codes.npy"
    code, seconds, peak = run_polled(["encode", str(work / "model"), str(data), "--out", str(codes),
                                      "--device", args.device, "--quiet"])
    logger.info("file %s: %.2f GB; rqgmm encode exit %d in %.1f s (%.1f M rows/s with start-up); peak RssAnon %.0f MB",
                data, data.stat().st_size / 1e9, code, seconds, args.n / seconds / 1e6, peak)
    if code == 0 and args.check_rows > 0:
        logger.info("streamed codes equal to the library's on %.4f of %d sampled rows",
                    check_codes(work / "model", data, codes, args.check_rows, args.device), args.check_rows)


if __name__ == "__main__":
    main()
