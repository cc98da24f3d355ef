"""`rqgmm evaluate --quick` at scale: seconds and peak host memory (RssAnon) per stage on a planted log.

    python -m rqgmm.bench.scale_memory --rows 5000000 --out /tmp/scale
    python -m rqgmm.bench.scale_memory --rows 100000000 --device cuda --out /tmp/scale   # a GPU host
    python -m rqgmm.bench.scale_memory --rows 50000000 --codebook-size 16 --no-ctr --out /tmp/scale   # no GPU

Writes ``OUT/log/{interactions,items}.parquet`` (``rqgmm.data.planted``: 200,000 items, 100,000 users by
default; kept and reused when a log of that size is already there), then runs in this process the quick
grid of BENCHMARKS.md (two embedding columns fused, ``--categorical category``, rqgmm and rqkmeans, K=256,
FNN) and times each stage: read and encode, split, tokenizers, the IDs' click-log diagnostics, CTR runs,
intervals, report. As the command line does, each run's test predictions go to its file under
``OUT/evaluate/runs`` (emptied first: nothing is resumed). A thread polls ``/proc/self/statm`` every 20 ms;
each stage's peak RssAnon is the largest seen while it ran. The table printed at the end (and
``OUT/scale_memory.json``) gives each stage's seconds and peak, and the ratio of the peak to the int table
plus the item vectors (the issue-28 target is 2x). ``--no-ctr`` leaves the CTR runs and their intervals out
(a CPU cannot train the grid at this size): the stages before them run as usual.
``--trace FILE`` writes each log line's time and the RssAnon peak until the next line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq

from rqgmm.evaluate.stages import StageMeter, rss_anon_mb

STAGES = ("read+encode", "split", "tokenizers", "diagnostics", "ctr", "intervals", "report")


def planted_log(rows: int, items: int, users: int, out: Path) -> tuple[Path, Path]:
    """The planted log of ``rows`` rows under ``out/log``, written unless one of that size is there."""
    from rqgmm.data.planted import PlantedConfig, write_planted

    paths = out / "log" / "interactions.parquet", out / "log" / "items.parquet"
    if all(p.is_file() for p in paths) and pq.ParquetFile(paths[0]).metadata.num_rows == rows:
        return paths
    for path in paths:
        path.unlink(missing_ok=True)
    return write_planted(PlantedConfig(rows=rows, items=items, users=users), out / "log")


def quick_config(device: str, sample_users: float, codebook_size: int = 256):
    """The quick grid of BENCHMARKS.md on a planted log."""
    from rqgmm.evaluate.config import config_from

    return config_from(dict(embedding=("embedding", "embedding_1"), categorical=("category",),
                            methods=("rqgmm", "rqkmeans"), codebook_size=codebook_size, backbones=("fnn",),
                            quick=True, device=device, sample_users=sample_users))


def measured_evaluate(paths: tuple[Path, Path], config, out: Path, meter: StageMeter) -> dict:
    """The quick grid, each stage under ``meter`` (opened by the caller); returns the data's sizes."""
    from rqgmm.evaluate.config import run_settings
    from rqgmm.evaluate.grid import RecordStore
    from rqgmm.evaluate.names import RUNS
    from rqgmm.evaluate.inputs import check_inputs, read_table
    from rqgmm.evaluate.report import write_into
    from rqgmm.evaluate.retrieval_task import evaluate_tasks

    data = meter.run("read+encode", lambda: check_inputs(read_table(str(paths[0]), "interactions"),
                                                         read_table(str(paths[1]), "items"), config))
    shutil.rmtree(out / "evaluate" / RUNS, ignore_errors=True)  # a fresh grid: nothing resumed
    store = RecordStore(out / "evaluate", dict(run_settings(config), dataset="planted"))  # as the command line:
    # each run's test predictions go to its file under runs/ and are read back when compared
    sizes = dict(rows=len(data.interactions), items=len(data.items), int_table_mb=data.interactions.nbytes / 2**20,
                 vectors_mb=sum(v.nbytes for v in data.vectors.values()) / 2**20)
    # split, tokenizers, ctr and intervals are measured by evaluate itself, under this open meter
    records, seconds = evaluate_tasks(data, config, "planted", store, False)
    meta = dict(command="python -m rqgmm.bench.scale_memory", dataset="planted", rows=sizes["rows"],
                items=sizes["items"], seconds=seconds)
    meter.run("report", lambda: write_into(out / "evaluate", records, meta))
    return sizes


def table_lines(result: dict) -> list[str]:
    """The compact table: one line per stage, then the peak against the data."""
    lines = [f"{'stage':<12} {'seconds':>9} {'peak RssAnon MB':>16}"]
    for stage in STAGES:
        if stage in result["seconds"]:
            lines.append(f"{stage:<12} {result['seconds'][stage]:>9.1f} {result['peak_mb'][stage]:>16,.0f}")
    data = result["int_table_mb"] + result["vectors_mb"]
    lines.append(f"{result['rows']:,} rows, {result['items']:,} items, device {result['device']}: int table "
                 f"{result['int_table_mb']:,.0f} MB + item vectors {result['vectors_mb']:,.0f} MB; peak "
                 f"{result['peak']:,.0f} MB = {result['ratio']:.2f} x (baseline after imports and any CUDA context "
                 f"{result['baseline_mb']:,.0f} MB; {(result['peak'] - result['baseline_mb']) / data:.2f} x above it)")
    return lines


@contextlib.contextmanager
def without_ctr():
    """The grid with its CTR runs and their comparisons left out (every stage before them runs as usual)."""
    from unittest import mock

    from rqgmm.evaluate import run

    with mock.patch.object(run.Evaluation, "_ctr", lambda self, grid, jobs, codes: None), \
            mock.patch.object(run, "comparisons", lambda records, test=None, **kw: []):
        yield


class Trace:
    """RssAnon every 50 ms and every log record's time: where, between two log lines, memory peaked."""

    def __init__(self) -> None:
        self.start, self.samples, self.lines, self.done = time.perf_counter(), [], [], threading.Event()
        self.handler = logging.Handler(logging.DEBUG)
        self.handler.emit = lambda record: self.lines.append((time.perf_counter() - self.start, record.getMessage()))
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self.done.wait(0.05):
            self.samples.append((time.perf_counter() - self.start, rss_anon_mb() or 0.0))

    def __enter__(self) -> "Trace":  # the library's records, at DEBUG (the level is restored on exit)
        library = logging.getLogger("rqgmm")
        self.level = library.level
        library.addHandler(self.handler)
        library.setLevel(logging.DEBUG)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()
        logging.getLogger("rqgmm").removeHandler(self.handler)
        logging.getLogger("rqgmm").setLevel(self.level)

    def text(self) -> str:
        """One line per log record: its time, the RssAnon peak until the next record, the message."""
        marks = self.lines + [(float("inf"), "(end)")]
        out = []
        for (t, message), (t_next, _) in zip(marks, marks[1:]):
            peak = max((r for s, r in self.samples if t <= s < t_next), default=0.0)
            out.append(f"{t:8.1f} s  peak {peak:8,.0f} MB  {message[:160]}")
        return "\n".join(out) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rqgmm.bench.scale_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, required=True, help="rows of the planted log")
    parser.add_argument("--out", required=True, help="directory: log/, evaluate/, scale_memory.json")
    parser.add_argument("--device", default="cpu", help="torch device of the grid (default cpu)")
    parser.add_argument("--items", type=int, default=200_000, help="catalogue size (default 200000)")
    parser.add_argument("--users", type=int, default=100_000, help="users (default 100000)")
    parser.add_argument("--sample-users", type=float, default=1.0, help="evaluate's --sample-users (default 1)")
    parser.add_argument("--codebook-size", type=int, default=256, help="K per level (default 256)")
    parser.add_argument("--trace", help="file: each log line's time and the RssAnon peak until the next")
    parser.add_argument("--no-ctr", action="store_true",
                        help="skip the CTR runs and their intervals (a host without a GPU: reading, split, "
                             "tokenizers and diagnostics only)")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    paths = planted_log(args.rows, args.items, args.users, out)
    generated_s = time.perf_counter() - start
    config = quick_config(args.device, args.sample_users, args.codebook_size)
    import torch  # the baseline counts the libraries every stage needs

    if torch.device(args.device).type == "cuda":  # and, on a GPU, the CUDA context's own host memory (driver,
        torch.ones(1, 1, device=args.device) @ torch.ones(1, 1, device=args.device)  # cuBLAS), else the first stage's
    baseline = rss_anon_mb()
    trace = Trace()
    with StageMeter() as meter, (trace if args.trace else contextlib.nullcontext()), \
            (without_ctr() if args.no_ctr else contextlib.nullcontext()):
        sizes = measured_evaluate(paths, config, out, meter)
    if args.trace:
        Path(args.trace).write_text(trace.text())
    peak = max(meter.peaks.values())
    result = dict(sizes, device=args.device, sample_users=args.sample_users, generate_s=round(generated_s, 1),
                  ctr=not args.no_ctr,
                  seconds=meter.seconds, peak_mb=meter.peaks, peak=peak, baseline_mb=baseline,
                  ratio=peak / (sizes["int_table_mb"] + sizes["vectors_mb"]))
    (out / "scale_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    for line in table_lines(result):
        print(line)  # a measurement script's table
    return result


if __name__ == "__main__":
    main()
