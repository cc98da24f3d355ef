"""A small synthetic impression log with every kind of declared field, for ``rqgmm evaluate`` tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

N_USERS, N_ITEMS, N_ROWS, N_CLUSTERS = 40, 60, 1500, 4


def synthetic_log(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Interactions (user_id, item_id, label, timestamp, hour, recent, dwell) and items
    (item_id, brand, tags, price, text_emb, image_emb): the click rate follows a hidden item
    cluster that both embeddings carry; later rows bring new (cold) items."""
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, N_CLUSTERS, N_ITEMS)
    centres = rng.normal(size=(N_CLUSTERS, 8))
    items = pd.DataFrame({
        "item_id": np.arange(N_ITEMS, dtype=np.int64),
        "brand": rng.choice(["acme", "globex", "initech"], N_ITEMS),
        "tags": [list(rng.choice(["a", "b", "c", "d"], rng.integers(0, 3), replace=False)) for _ in range(N_ITEMS)],
        "price": rng.gamma(2.0, 10.0, N_ITEMS),
        "text_emb": list((centres[cluster] + 0.3 * rng.normal(size=(N_ITEMS, 8))).astype(np.float32)),
        "image_emb": list((centres[cluster][:, :6] + 0.5 * rng.normal(size=(N_ITEMS, 6))).astype(np.float32)),
    })
    timestamp = np.sort(rng.integers(0, 10_000, N_ROWS))
    # items 0..39 early, 40..59 appear only late: the last rows hold cold items
    late = timestamp > np.quantile(timestamp, 0.8)
    item = np.where(late & (rng.random(N_ROWS) < 0.5), rng.integers(40, N_ITEMS, N_ROWS), rng.integers(0, 40, N_ROWS))
    user = rng.integers(0, N_USERS, N_ROWS)
    effect = np.array([-1.5, -0.5, 0.5, 1.5])[cluster[item]]
    label = (rng.random(N_ROWS) < 1 / (1 + np.exp(-effect))).astype(np.int64)
    interactions = pd.DataFrame({
        "user_id": user.astype(np.int64), "item_id": item.astype(np.int64), "label": label, "timestamp": timestamp,
        "hour": rng.integers(0, 24, N_ROWS), "recent": [list(rng.choice(["x", "y", "z"], 2)) for _ in range(N_ROWS)],
        "dwell": rng.exponential(3.0, N_ROWS),
    })
    return interactions, items


def write_synthetic(directory: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write the log as ``interactions.parquet`` and ``items.parquet`` under ``directory``."""
    interactions, items = synthetic_log(seed)
    paths = directory / "interactions.parquet", directory / "items.parquet"
    interactions.to_parquet(paths[0])
    items.to_parquet(paths[1])
    return paths
