"""Publishing at scale: ``python -m rqgmm.bench.publish [--n 10000000] [--d 32] [--dir /tmp/rqgmm-publish]``.

Side by side in one run, on a generated catalogue of N items (a Gaussian mixture,
D dimensions, item ids 0..N-1, written once as parquet and reused):

1. ``rqgmm fit --sample`` of an L x K model (default 2 x 256);
2. ``rqgmm publish`` of the first 90% of the items: a store of 0.9 N items (set-up);
3. ``rqgmm publish`` of all N items: 10% new against the 0.9 N store (the
   target: seconds and the child's peak RssAnon, polled every 50 ms), with
   ``--max-per-prefix`` as given (default none);
4. the prefix trie of the N published full IDs built in this process (seconds),
   and one constrained decode step: ``allowed_next`` for a batch of 4,096
   published prefixes at every depth (median of 20 runs, on ``--device``).

Prints one JSON object (and writes it with ``--out``).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from rqgmm.store.generations import Store
from rqgmm.ids.trie import PrefixTrie
from rqgmm.bench.memory import run_polled

logger = logging.getLogger(__name__)

ROW_GROUP = 1 << 20
BATCH = 4096
REPEATS = 20


def write_catalogue(path: Path, n: int, d: int, seed: int = 0, clusters: int = 64) -> None:
    """A parquet of N items: ``item_id`` 0..N-1 and a D-dimensional mixture ``embedding``, written in row groups."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 4, (clusters, d)).astype(np.float32)
    schema = pa.schema([("item_id", pa.int64()), ("embedding", pa.list_(pa.float32(), d))])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, n, ROW_GROUP):
            m = min(ROW_GROUP, n - start)
            x = means[rng.integers(clusters, size=m)] + rng.normal(size=(m, d)).astype(np.float32)
            emb = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), d)
            writer.write_table(pa.table({"item_id": np.arange(start, start + m), "embedding": emb}, schema=schema))


def first_rows(source: Path, path: Path, n: int) -> None:
    """The first n rows of the parquet ``source`` as ``path``."""
    file = pq.ParquetFile(source)
    with pq.ParquetWriter(path, file.schema_arrow) as writer:
        done = 0
        for batch in file.iter_batches(batch_size=ROW_GROUP):
            take = min(len(batch), n - done)
            writer.write_table(pa.Table.from_batches([batch.slice(0, take)]))
            done += take
            if done >= n:
                break


def decode_step(trie: PrefixTrie, ids: np.ndarray, device: str) -> list[dict]:
    """Median seconds of ``allowed_next`` for BATCH published prefixes of each depth, on ``device``."""
    trie = trie.to(device)
    rows = np.random.default_rng(1).integers(len(ids), size=BATCH)
    out = []
    for t in range(trie.length):
        prefixes = torch.from_numpy(ids[rows, :t].copy()).to(device)
        times = []
        for _ in range(REPEATS):
            _sync(device)
            start = time.perf_counter()
            mask = trie.allowed_next(prefixes)
            _sync(device)
            times.append(time.perf_counter() - start)
        out.append({"depth": t, "batch": BATCH, "seconds_median": float(np.median(times)),
                    "allowed_mean": float(mask.sum(1).float().mean())})
    return out


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rqgmm.bench.publish", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--d", type=int, default=32)
    parser.add_argument("--levels", type=int, default=2)
    parser.add_argument("--k", type=int, default=256)
    parser.add_argument("--new-share", type=float, default=0.1)
    parser.add_argument("--max-per-prefix", type=int, default=None)
    parser.add_argument("--sample", type=int, default=200_000, help="rows the model is fitted on")
    parser.add_argument("--device", default="cpu", help="where the decode step runs")
    parser.add_argument("--dir", default="/tmp/rqgmm-publish")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    work = Path(args.dir)
    work.mkdir(parents=True, exist_ok=True)
    full, first = work / f"catalogue-{args.n}x{args.d}.parquet", work / f"first-{args.n}x{args.d}.parquet"
    n_old = int(round(args.n * (1 - args.new_share)))
    if not full.exists():
        write_catalogue(full, args.n, args.d)
    if not first.exists():
        first_rows(full, first, n_old)
    model, store = work / f"model-{args.levels}x{args.k}", work / "store"
    shutil.rmtree(store, ignore_errors=True)  # a fresh store each run
    result = {"n": args.n, "d": args.d, "levels": args.levels, "k": args.k, "old_items": n_old,
              "new_items": args.n - n_old, "max_per_prefix": args.max_per_prefix,
              "threads": torch.get_num_threads()}
    if not (model / "config.json").exists():  # the model is kept between runs (its sizes are in the name)
        code, seconds, _ = run_polled(["fit", str(full), "--levels", str(args.levels), "--codebook-size",
                                       str(args.k), "--sample", str(args.sample), "--max-iter", "20", "--quiet",
                                       "--out", str(model)])
        result["fit"] = {"exit": code, "seconds": seconds}
    cap = ["--max-per-prefix", str(args.max_per_prefix)] if args.max_per_prefix else []
    for name, catalogue in (("publish_old", first), ("publish_new", full)):
        code, seconds, peak = run_polled(["publish", str(model), str(catalogue), "--store", str(store), "--quiet",
                                          *cap])
        result[name] = {"exit": code, "seconds": seconds, "peak_rss_anon_mb": peak}
        logger.info("%s: exit %d in %.1f s, peak RssAnon %.0f MB", name, code, seconds, peak)
    s = Store.open(store)
    result["counts"] = s.current["counts"]
    gen = s.read()
    ids = gen.full_ids()[gen.live]
    start = time.perf_counter()
    trie = PrefixTrie.build(ids, [*s.codebook_sizes, s.current["counts"]["suffix_size"]])
    result["trie"] = {"ids": len(ids), "build_seconds": time.perf_counter() - start, "edges": len(trie.token),
                      "decode_step": decode_step(trie, ids, args.device)}
    logger.info("trie of %d IDs built in %.1f s", len(ids), result["trie"]["build_seconds"])
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
