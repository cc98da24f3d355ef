"""CTR trainer benchmark: the trainer beside a bare-torch anchor, feature encoding, and an evaluate's peak memory.

    python -m rqgmm.bench.ctr [--device cpu] [--rows 200000] [--batches 1024,8192,65536] [--compile]
    python -m rqgmm.bench.ctr --device cuda --rows 5000000 --batches 8192,32768,65536 --dir /tmp/rqgmm-ctr
    python -m rqgmm.bench.ctr --frames --rows 200000 --batches 1024   # any checkout: see below

One run prints, side by side on ``--device``:

- training rows/s of the trainer (:func:`rqgmm.ctr.train` for one epoch on an
  encoded generated log: FNN, 7 categorical fields and a 96-d item embedding,
  MLP 128-64) and of a bare-torch anchor (the same FNN over int fields and an
  embedding vector per row already on the device: one ``nn.Embedding``, fused
  Adam, no per-step host sync) at each ``--batches`` size, and their ratio;
  the trainer's default batch for the log is added to the list;
- feature-encoding rows/s: the log's record batches through
  :class:`~rqgmm.ctr.log.LogEncoder` (int32 codes), then the split's ordering
  and training vocabularies (:meth:`~rqgmm.ctr.log.EncodedLog.ordered`);
- peak host memory (RssAnon, polled every 50 ms) of a child ``rqgmm
  evaluate --quick --variants embedding --backbones fnn`` on the log written to
  parquet, beside the int table's and the item embeddings' bytes
  (``--memory-rows 0`` skips it).

The log is generated with numpy (users and items with popularity skew, an
item effect on the click, int and string columns).

``--frames`` measures instead the trainer through the DataFrame API that every
checkout has (``FeatureBuilder`` → ``train``, one epoch): run the file with an
older checkout first on ``PYTHONPATH`` to compare trainers side by side, e.g.
``PYTHONPATH=/tmp/old python rqgmm/bench/ctr.py --frames``.
"""

from __future__ import annotations

import argparse
import logging
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

logger = logging.getLogger(__name__)

CATEGORICAL = ("hour", "slot", "site", "device")
EMBEDDING_DIM = 96


# ----------------------------------------------------------------------------- the generated log


def generate_log(rows: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A click log (user_id, item_id, label, timestamp, hour, slot, site, device) and its items (brand, embedding).

    Users and items are drawn with a Zipf-like skew; the click depends on an
    item topic that the embedding carries, and on the hour. ``device`` holds
    strings. Items number rows / 25, users rows / 50 (at least 10 each).
    """
    rng = np.random.default_rng(seed)
    n_items, n_users = max(rows // 25, 10), max(rows // 50, 10)
    topics = rng.integers(0, 16, n_items)
    centres = rng.normal(size=(16, EMBEDDING_DIM)).astype(np.float32)
    vectors = centres[topics] + 0.5 * rng.normal(size=(n_items, EMBEDDING_DIM)).astype(np.float32)
    skew = lambda n, size: np.minimum((rng.pareto(1.2, size) * n / 20).astype(np.int64), n - 1)  # noqa: E731
    item, user, hour = skew(n_items, rows), skew(n_users, rows), rng.integers(0, 24, rows)
    logit = np.linspace(-1.5, 1.5, 16)[topics[item]] + 0.3 * np.sin(hour / 24 * 2 * np.pi)
    frame = pd.DataFrame({
        "user_id": user, "item_id": item, "label": (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int8),
        "timestamp": np.arange(rows, dtype=np.int64), "hour": hour, "slot": rng.integers(0, 16, rows),
        "site": rng.integers(0, 1000, rows), "device": np.array([f"d{i}" for i in range(8)])[rng.integers(0, 8, rows)],
    })
    items = pd.DataFrame({"item_id": np.arange(n_items), "brand": rng.integers(0, 200, n_items),
                          "embedding": list(vectors)})
    return frame, items


# ----------------------------------------------------------------------------- anchor


def anchor_rows_per_second(codes: torch.Tensor, vectors: torch.Tensor, labels: torch.Tensor, batch: int,
                           lr: float, dim: int = 16) -> float:
    """Training rows/s of a bare FNN: one embedding table over ``codes`` (N, F) (offsets added), a projection
    of ``vectors`` (N, D), MLP 128-64, fused Adam; one epoch in a random order, timed after a warm-up."""
    device = codes.device
    torch.manual_seed(0)
    table = nn.Embedding(int(codes.max()) + 1, dim).to(device)
    project = nn.Linear(vectors.shape[1], dim).to(device)
    mlp = nn.Sequential(nn.Linear((codes.shape[1] + 1) * dim, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                        nn.Linear(64, 1)).to(device)
    params = [*table.parameters(), *project.parameters(), *mlp.parameters()]
    optimizer = torch.optim.Adam(params, lr=lr, fused=True)

    def step(index: torch.Tensor) -> None:
        x = torch.cat([table(codes[index]).flatten(1), project(vectors[index])], 1)
        loss = nn.functional.binary_cross_entropy_with_logits(mlp(x).squeeze(-1), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    order = torch.randperm(len(codes), device=device)
    for start in range(0, min(len(codes), 5 * batch), batch):  # warm-up
        step(order[start:start + batch])
    _sync(device)
    began = time.perf_counter()
    for start in range(0, len(codes), batch):
        step(order[start:start + batch])
    _sync(device)
    return len(codes) / (time.perf_counter() - began)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- the trainer on an encoded log


def encoded(frame: pd.DataFrame, items: pd.DataFrame):
    """(log, seconds to encode, seconds to order): the frame's record batches through LogEncoder, then ordered."""
    import pyarrow as pa

    from rqgmm.ctr.log import ItemTable, LogColumns, LogEncoder
    from rqgmm.data.splits import cut_points, time_order

    columns = LogColumns("user_id", "item_id", "label", "timestamp", categorical=CATEGORICAL,
                         item_categorical=("brand",))
    table = pa.Table.from_pandas(frame, preserve_index=False)
    began = time.perf_counter()
    encoder = LogEncoder(columns, len(frame))
    for batch in table.to_batches(max_chunksize=1 << 20):
        encoder.add(batch)
    log = encoder.finish(ItemTable.encode(items.set_axis(items["item_id"].astype(str)), "item_id", columns))
    encode_seconds = time.perf_counter() - began
    began = time.perf_counter()
    ordered = log.ordered(time_order(log.sort_keys()), cut_points(len(log))[0])
    return ordered, encode_seconds, time.perf_counter() - began


def trainer_rows_per_second(log, items: pd.DataFrame, batch: int | None, device: str, compile_model: bool) -> tuple[float, int]:
    """(rows/s, batch) of one epoch of :func:`rqgmm.ctr.train` (FNN, embedding variant) on ``log``'s training rows."""
    from rqgmm.ctr import FeatureSpec, ItemContent, TrainConfig, make_model, train
    from rqgmm.ctr.log import LogPart

    spec = FeatureSpec("user_id", "item_id", "label", (*CATEGORICAL, "brand"))
    content = [ItemContent.embedding("embedding", items["item_id"].astype(str).to_numpy(),
                                     np.stack(items["embedding"].to_numpy()))]
    n, valid = log.n_train, min(len(log) - log.n_train, 10_000)
    parts = [LogPart(log, 0, n), LogPart(log, n, n + valid)]
    fields, (train_t, valid_t) = log.tensors(spec, content, parts, device)
    config = TrainConfig(batch_size=batch, max_epochs=1, device=device, num_threads=None, compile=compile_model)
    warm = min(n, 5 * config.batch_for(n))
    train(make_model("fnn", fields, seed=0), train_t.part(slice(0, warm)), valid_t, config)  # kernels, allocator
    result = train(make_model("fnn", fields, seed=0), train_t, valid_t, config)
    return result.rows_per_second, result.batch_size


def anchor_inputs(log, items: pd.DataFrame, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The anchor's inputs for ``log``'s training rows, on ``device``: codes with offsets, vectors per row, labels."""
    n = log.n_train
    fields = [log.codes["user_id"], log.items.ids[log.item_rows], *(log.codes[c] for c in CATEGORICAL),
              log.items.codes["brand"][log.item_rows]]
    sizes = np.cumsum([0] + [int(f.max()) + 1 for f in fields])[:-1]
    codes = np.stack([f[:n].astype(np.int64) + s for f, s in zip(fields, sizes)], 1)
    vectors = np.stack(items["embedding"].to_numpy()).astype(np.float32)[log.item_rows[:n]]
    return (torch.from_numpy(codes).to(device), torch.from_numpy(vectors).to(device),
            torch.from_numpy(log.labels[:n].astype(np.float32)).to(device))


# ----------------------------------------------------------------------------- memory of an evaluate


def evaluate_memory(frame: pd.DataFrame, items: pd.DataFrame, device: str, work: Path) -> tuple[int, float, float]:
    """(exit status, seconds, peak RssAnon MB) of ``rqgmm evaluate --quick`` (FNN, embedding variant) on the log."""
    from rqgmm.bench.memory import run_polled

    work.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(work / "interactions.parquet")
    items.to_parquet(work / "items.parquet")
    return run_polled(["evaluate", str(work / "interactions.parquet"), "--items", str(work / "items.parquet"),
                       "--out", str(work / "out"), "--categorical", ",".join((*CATEGORICAL, "brand")),
                       "--variants", "embedding", "--backbones", "fnn", "--quick", "--device", device, "--quiet"])


# ----------------------------------------------------------------------------- any checkout: DataFrame API


def frames_rows_per_second(frame: pd.DataFrame, items: pd.DataFrame, batch: int, threads: int) -> float:
    """Rows/s of one epoch of ``train`` through FeatureBuilder (an API every checkout has), on CPU."""
    from rqgmm.ctr import FeatureBuilder, FeatureSpec, ItemContent, TrainConfig, make_model, train

    n = int(0.9 * len(frame))
    spec = FeatureSpec("user_id", "item_id", "label", (*CATEGORICAL, "brand"))
    content = [ItemContent.embedding("embedding", items["item_id"].to_numpy(), np.stack(items["embedding"].to_numpy()))]
    builder = FeatureBuilder(spec).fit(frame.iloc[:n], items=items[["item_id", "brand"]], content=content)
    train_t, valid_t = builder.transform(frame.iloc[:n]), builder.transform(frame.iloc[n:])
    config = TrainConfig(lr=4e-3, batch_size=batch, max_epochs=1, num_threads=threads)
    train(make_model("fnn", builder.fields, seed=0), builder.transform(frame.iloc[:5 * batch]), valid_t, config)
    result = train(make_model("fnn", builder.fields, seed=0), train_t, valid_t, config)
    return n / result.seconds  # seconds include one validation pass over 10% of the rows


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batches", default="1024,8192,65536")
    parser.add_argument("--compile", action="store_true", help="also time the trainer with torch.compile")
    parser.add_argument("--memory-rows", type=int, default=None, help="rows of the evaluate whose memory is polled "
                        "(default --rows; 0 skips it)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads on CPU")
    parser.add_argument("--frames", action="store_true", help="time the DataFrame-API trainer of this checkout only")
    parser.add_argument("--dir", default=None, help="where the memory run writes its parquet files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    batches = [int(b) for b in args.batches.split(",")]
    frame, items = generate_log(args.rows)
    lines = []
    if args.frames:
        for batch in batches:
            lines.append(f"frames trainer  batch {batch:>6}: {frames_rows_per_second(frame, items, batch, args.threads):,.0f}"
                         f" rows/s (CPU, {args.threads} threads, validation included)")
        return _log(lines)
    torch.set_num_threads(args.threads)
    log, encode_s, order_s = encoded(frame, items)
    lines.append(f"device {args.device}; log {len(log):,} rows, {len(items):,} items, int table "
                 f"{log.nbytes / 1e6:,.1f} MB, item embeddings {len(items) * EMBEDDING_DIM * 4 / 1e6:,.1f} MB")
    lines.append(f"encoding: {len(log) / encode_s:,.0f} rows/s (record batches -> int32); ordering + training "
                 f"vocabularies: {len(log) / order_s:,.0f} rows/s")
    codes, vectors, labels = anchor_inputs(log, items, args.device)
    default = trainer_rows_per_second(log, items, None, args.device, False)
    for batch in sorted({*batches, default[1]}):
        ours, used = default if batch == default[1] else trainer_rows_per_second(log, items, batch, args.device, False)
        lr = 4e-3 * math.sqrt(batch / 1024)
        anchor = anchor_rows_per_second(codes, vectors, labels, batch, lr)
        line = (f"batch {used:>6}{' (default)' if used == default[1] else '          '}: trainer {ours:>12,.0f} rows/s"
                f"   anchor {anchor:>12,.0f} rows/s   ratio {ours / anchor:.2f}")
        if args.compile:
            line += f"   compiled {trainer_rows_per_second(log, items, batch, args.device, True)[0]:,.0f} rows/s"
        lines.append(line)
    memory_rows = args.rows if args.memory_rows is None else args.memory_rows
    if memory_rows:
        frame, items = generate_log(memory_rows) if memory_rows != args.rows else (frame, items)
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            code, seconds, peak = evaluate_memory(frame, items, args.device, Path(tmp))
        int_mb = log.nbytes / 1e6 * memory_rows / len(log)
        emb_mb = len(items) * EMBEDDING_DIM * 4 / 1e6
        lines.append(f"evaluate --quick on {memory_rows:,} rows: exit {code} in {seconds:.1f} s; peak RssAnon "
                     f"{peak:,.0f} MB = {peak / (int_mb + emb_mb):.2f} x (int table {int_mb:,.1f} MB + item "
                     f"embeddings {emb_mb:,.1f} MB), interpreter and torch included")
    return _log(lines)


def _log(lines: list[str]) -> list[str]:
    for line in lines:
        logger.info("%s", line)
    return lines


if __name__ == "__main__":
    main()
