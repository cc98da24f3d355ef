"""The verdict's intervals at scale: seconds and peak host memory of ``comparisons`` on a quick-grid-shaped case.

    python -m rqgmm.bench.intervals_speed --rows 500000 --users 100000 [--backbones 4] [--seeds 1]

A synthetic test log of ``--rows`` rows over ``--users`` users (each row in a
popularity slice: cold, tail, torso, head), and the CTR runs of the quick grid
per backbone and regime (none, embedding, IDs and IDs+embedding of two
tokenizers, per seed), each run's predictions stored in its own ``.npz`` and
read from there as ``rqgmm evaluate`` reads them. Prints the seconds (wall and
CPU: on a shared machine the CPU seconds are the steadier) of
:func:`rqgmm.evaluate.verdict.comparisons`, its peak RssAnon above the
RssAnon before it (the test rows and imports counted out), the number of
comparisons and a checksum of the records (the same seed gives the same
records). Run it on two checkouts with ``PYTHONPATH`` to compare them side by
side on one machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from rqgmm.evaluate.grid import StoredArray
from rqgmm.evaluate.slices import SLICES
from rqgmm.evaluate.stages import StageMeter, rss_anon_mb
from rqgmm.evaluate.verdict import TestRows, comparisons

REGIMES = ("side fields", "content only")
TOKENIZERS = ("rqgmm 3x256", "rqkmeans 3x256")
LABELS = ("none", "embedding", *(f"{v} ({t})" for v in ("ids", "ids+embedding") for t in TOKENIZERS))


def test_rows(rows: int, users: int, seed: int = 0) -> tuple[TestRows, np.ndarray]:
    """Test rows (labels from a known logit, users, slices) and that logit (rows,)."""
    rng = np.random.default_rng(seed)
    user = np.sort(rng.integers(0, users, rows))
    logit = rng.normal(0, 0.7, users)[user] + rng.normal(0, 1.0, rows) - 1.5
    labels = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    slices = np.asarray(SLICES)[rng.choice(len(SLICES), rows, p=(0.1, 0.2, 0.3, 0.4))]
    return TestRows(labels, user, slices), logit


def stored_runs(test: TestRows, logit: np.ndarray, backbones: int, seeds: int, directory: Path) -> list[dict]:
    """One CTR record per regime x backbone x seed x label; each run's predictions written to its own .npz."""
    rng, records = np.random.default_rng(1), []
    for regime in REGIMES:
        for b in range(backbones):
            for seed in range(seeds):
                for i, label in enumerate(LABELS):
                    key = (regime, f"b{b}", seed, label)
                    path = directory / f"{len(records)}.npz"
                    noise = rng.normal(0, 1.0 - 0.05 * i, len(logit))
                    np.savez(path, predictions=(logit + noise).astype(np.float32))
                    test.predictions[key] = StoredArray(path, "predictions")
                    variant, _, tokenizer = label.partition(" (")
                    records.append(dict(kind="ctr", dataset="bench", regime=regime, backbone=f"b{b}", seed=seed,
                                        variant=variant, tokenizer=tokenizer.rstrip(")") or None, label=label,
                                        auc=0.5, n_test=len(logit),
                                        slices={s: dict(auc=0.5, n=0) for s in SLICES}))
    return records


def checksum(comps: list[dict]) -> str:
    """A short hash of the comparison records (floats rounded to 12 significant digits)."""
    def rounded(value):
        return float(f"{value:.12g}") if isinstance(value, float) else value
    text = json.dumps([{k: rounded(v) for k, v in c.items()} for c in comps], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m rqgmm.bench.intervals_speed",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000, help="test rows (default 500000)")
    parser.add_argument("--users", type=int, default=100_000, help="test users (default 100000)")
    parser.add_argument("--backbones", type=int, default=4, help="backbones (default 4)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds (default 1)")
    parser.add_argument("--json", help="write the comparison records here")
    args = parser.parse_args(argv)
    test, logit = test_rows(args.rows, args.users)
    with tempfile.TemporaryDirectory() as directory:
        records = stored_runs(test, logit, args.backbones, args.seeds, Path(directory))
        del logit
        before = rss_anon_mb()
        with StageMeter() as meter:
            start, cpu = time.perf_counter(), time.process_time()
            comps = meter.run("intervals", lambda: comparisons(records, test))
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    above = meter.peaks.get("intervals", before) - before if before is not None else float("nan")
    result = dict(rows=args.rows, users=args.users, runs=len(records), comparisons=len(comps),
                  family=max(c["family"] for c in comps), seconds=round(seconds, 2), cpu_seconds=round(cpu, 2),
                  peak_above_mb=round(above, 1), checksum=checksum(comps))
    if args.json:
        Path(args.json).write_text(json.dumps(comps, indent=1, default=str) + "\n")
    print(json.dumps(result))  # a measurement script's line
    return result


if __name__ == "__main__":
    main()
