"""The planted-log generator: its shapes, its cold items, its seed, and a signal ``rqgmm evaluate`` finds."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from rqgmm.cli import main
from rqgmm.data.planted import PlantedConfig, PlantedLog, main as planted_main, write_planted

SMALL = PlantedConfig(rows=5_000, items=300, users=50, topics=4, widths=(8, 4), row_group=1_024, seed=3)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("planted")
    return write_planted(SMALL, out)


def test_files_have_the_declared_shapes_types_and_row_groups(small):
    rows, items = pq.read_table(small[0]), pq.read_table(small[1])
    assert rows.num_rows == SMALL.rows and pq.ParquetFile(small[0]).num_row_groups == 5  # ceil(5000 / 1024)
    assert rows.schema.names == ["user_id", "item_id", "label", "timestamp"]
    frame = rows.to_pandas()
    assert set(frame["label"].unique()) == {0, 1} and frame["timestamp"].is_monotonic_increasing
    assert frame["user_id"].between(0, SMALL.users - 1).all() and frame["item_id"].between(0, SMALL.items - 1).all()
    assert items.schema.names == ["item_id", "category", "embedding", "embedding_1"]
    assert items.column("item_id").to_numpy().tolist() == list(range(SMALL.items))
    for name, width in zip(["embedding", "embedding_1"], SMALL.widths):
        matrix = np.stack(items.column(name).to_numpy(zero_copy_only=False))
        assert matrix.shape == (SMALL.items, width) and matrix.dtype == np.float32


def test_embeddings_carry_the_topic(small):
    """Most items are nearer their own topic's mean embedding than any other (chance: 1 in 4; 8-d, noise 1)."""
    world = PlantedLog(SMALL).world
    X = world.vectors["embedding"]
    means = np.stack([X[world.topic == t].mean(0) for t in range(SMALL.topics)])
    nearest = ((X[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert (nearest == world.topic).mean() > 0.8


def test_items_are_released_over_time_so_the_last_rows_hold_cold_items(small):
    """No item appears before its release; items first seen in the last 10% by time exist and are new there."""
    frame = pq.read_table(small[0]).to_pandas()
    release = PlantedLog(SMALL).world.release
    t = (np.arange(len(frame)) + 0.5) / len(frame)
    assert (release[frame["item_id"].to_numpy()] <= t).all()
    train, test = frame.iloc[: int(0.8 * len(frame))], frame.iloc[int(0.9 * len(frame)):]
    cold = ~test["item_id"].isin(train["item_id"])
    assert cold.mean() > 0.05
    assert (release[test["item_id"][cold].to_numpy()] > 0).all()  # cold test items are late releases


def test_same_seed_same_files_other_seed_other_log(tmp_path, small):
    again = write_planted(SMALL, tmp_path / "again")
    other = write_planted(PlantedConfig(**{**SMALL.__dict__, "seed": 4}), tmp_path / "other")
    for a, b in zip(small, again):
        assert pq.read_table(a).equals(pq.read_table(b))
    assert not pq.read_table(small[0]).equals(pq.read_table(other[0]))


def test_command_line_writes_the_log_and_refuses_bad_sizes_in_one_line(tmp_path, capsys):
    assert planted_main(["--rows", "200", "--items", "20", "--users", "5", "--topics", "2", "--widths", "4",
                         "--out", str(tmp_path / "log"), "--quiet"]) == 0
    assert pq.read_table(tmp_path / "log" / "interactions.parquet").num_rows == 200
    capsys.readouterr()
    for argv, message in ((["--rows", "0"], "planted log: rows must be an integer >= 1, got 0"),
                          (["--widths", "4,x"], "argument --widths: expected comma-separated integers such as "
                                                "64,32, got '4,x' (see `python -m rqgmm.data.planted --help`)")):
        assert planted_main([*argv, "--out", str(tmp_path / "bad")]) == 2
        assert capsys.readouterr().err == f"rqgmm: error: {message}\n"
    assert not (tmp_path / "bad").exists()


def test_evaluate_finds_the_planted_signal(tmp_path):
    """On a small planted log, the content variants (embedding, IDs) beat no content in test AUC."""
    config = PlantedConfig(rows=20_000, items=2_000, users=100, topics=4, widths=(16, 8))
    rows, items = write_planted(config, tmp_path / "log")
    out = tmp_path / "out"
    code = main(["evaluate", str(rows), "--items", str(items), "--embedding", "embedding", "--embedding",
                 "embedding_1", "--quick", "--backbones", "fnn", "--methods", "rqkmeans", "--codebook-size", "8",
                 "--variants", "none,embedding,ids", "--out", str(out), "--quiet"])
    assert code == 0
    auc = {r["label"]: r["auc"] for r in json.loads((out / "results.json").read_text())["records"]
           if r["kind"] == "ctr"}
    assert auc["embedding"] > auc["none"] and auc["ids (rqkmeans)"] > auc["none"], auc
