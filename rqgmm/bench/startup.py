"""Start-up study: how long ``rqgmm --help``, ``fit``/``evaluate``/``benchmark --help``, refused arguments and
values ``evaluate`` refuses after parsing (an unknown ``--task``, a TOML file with a bad value or key) take.

    python -m rqgmm.bench.startup --baseline DIR [--repeats 7]

``DIR`` is another source tree of rqgmm (e.g. ``git worktree add /tmp/base main``);
each command runs in a fresh interpreter with this tree and with ``DIR`` on
``PYTHONPATH``, the two interleaved so machine load falls on both alike, in a
scratch folder holding the (empty) files the commands name. Prints the median
seconds of each and the ratio baseline / this tree.
"""

from __future__ import annotations

import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rqgmm.console import Parser, exit_status, int_in, setup_logging

logger = logging.getLogger("rqgmm.bench.startup")  # also when run as __main__

HERE = Path(__file__).resolve().parents[2]
COMMANDS = {"rqgmm --help": ["--help"], "rqgmm fit --help": ["fit", "--help"],
            "refused argument": ["fit", "x.npy", "--levels", "0", "--out", "m"],
            "evaluate --help": ["evaluate", "--help"], "benchmark --help": ["benchmark", "--help"],
            "evaluate refused": ["evaluate", "r.parquet", "--items", "i.parquet", "--out", "o", "--seeds", "0"],
            "evaluate --task nope": ["evaluate", "r.parquet", "--items", "i.parquet", "--out", "o", "--task", "nope"],
            "bad TOML value": ["evaluate", "r.parquet", "--items", "i.parquet", "--out", "o", "--config", "bad.toml"],
            "unknown TOML key": ["evaluate", "r.parquet", "--items", "i.parquet", "--out", "o", "--config",
                                 "unknown.toml"],
            "evaluate --device cuda (no GPU)": ["evaluate", "r.parquet", "--items", "i.parquet", "--out", "o",
                                                "--device", "cuda"],
            "fit --device cuda (no GPU)": ["fit", "x.npy", "--out", "m", "--device", "cuda"]}
#: The files the commands name, written into the scratch folder they run in.
FILES = {"r.parquet": b"", "i.parquet": b"", "x.npy": b"", "bad.toml": b'task = "nope"\n', "unknown.toml": b"nope = 1\n"}


def seconds(tree: Path, argv: list[str], cwd: Path) -> float:
    """Wall seconds of ``python -m rqgmm ARGV`` in ``cwd`` with ``tree`` first on PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rqgmm", *argv], env=env, cwd=cwd, capture_output=True)
    return time.perf_counter() - start


def compare(baseline: Path, repeats: int) -> list[str]:
    """One line per command: median seconds of the baseline and of this tree, and their ratio."""
    lines = [f"{'command':<20} {'baseline s':>10} {'this s':>8} {'ratio':>7}  (median of {repeats}, interleaved)"]
    with tempfile.TemporaryDirectory() as scratch:
        for name, content in FILES.items():
            (Path(scratch) / name).write_bytes(content)
        for label, argv in COMMANDS.items():
            lines.append(_line(label, argv, baseline, repeats, Path(scratch)))
    return lines


def _line(label: str, argv: list[str], baseline: Path, repeats: int, cwd: Path) -> str:
    """``label``: the medians of the baseline and this tree, and their ratio."""
    runs = {"base": [], "this": []}
    for _ in range(repeats):
        runs["base"].append(seconds(baseline, argv, cwd))
        runs["this"].append(seconds(HERE, argv, cwd))
    base, this = statistics.median(runs["base"]), statistics.median(runs["this"])
    return f"{label:<20} {base:>10.2f} {this:>8.2f} {base / this:>6.1f}x"


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m rqgmm.bench.startup", description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="another rqgmm source tree to compare with")
    parser.add_argument("--repeats", type=int_in(1), default=7)

    def work() -> None:
        args = parser.parse_args(argv)
        setup_logging(False)
        for line in compare(Path(args.baseline).resolve(), args.repeats):
            logger.info(line)

    return exit_status(work)


if __name__ == "__main__":
    sys.exit(main())
