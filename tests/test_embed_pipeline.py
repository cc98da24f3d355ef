"""``embed`` in a pipeline: item fields carried through, progress lines off a terminal, a cache that survives a kill."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rqgmm import cli
from rqgmm.data import embedders
from rqgmm.data.embedders import HashingEmbedder, embed_items
from test_embed import cache  # noqa: F401 - the autouse fixture: a cache per test


@pytest.fixture
def items(tmp_path):
    path = tmp_path / "items.parquet"
    pq.write_table(pa.table({"sku": np.arange(40), "title": [f"item number {i}" for i in range(40)],
                             "category": [f"c{i % 3}" for i in range(40)], "price": np.arange(40) * 1.5}), path)
    return path


def run(capsys, *argv) -> tuple[int, str]:
    code = cli.main(["embed", *map(str, argv)])
    return code, capsys.readouterr().err


def test_keep_carries_item_fields_row_for_row(items, tmp_path, capsys):
    out = tmp_path / "e.parquet"
    code, err = run(capsys, items, "--text", "title", "--item", "sku", "--keep", "category,price", "--out", out,
                    "--model", "hashing-8")
    assert code == 0, err
    got, want = pq.read_table(out), pq.read_table(items)
    assert got.column_names == ["item_id", "embedding", "category", "price"]
    assert got.column("item_id").equals(want.column("sku")) and got.column("category").equals(want.column("category"))


@pytest.mark.parametrize("keep, expect", [("brand", "no column 'brand'"), ("embedding", "written by embed itself"),
                                          ("category,category", "name each column once")])
def test_keep_of_a_bad_column_is_refused_and_writes_nothing(items, tmp_path, capsys, keep, expect):
    code, err = run(capsys, items, "--text", "title", "--item", "sku", "--keep", keep, "--out", tmp_path / "e.parquet",
                    "--model", "hashing-8")
    assert code == 2 and err.count("\n") == 1 and expect in err and not (tmp_path / "e.parquet").exists()


def test_progress_is_logged_every_few_batches_off_a_terminal(items, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(embedders, "LOG_EVERY", 5)
    code, err = run(capsys, items, "--text", "title", "--item", "sku", "--out", tmp_path / "e.parquet",
                    "--model", "hashing-8", "--batch-size", "2")  # 20 batches
    progress = [line for line in err.splitlines() if "embedded" in line and "texts (batch" in line]
    assert code == 0 and [line.split("(batch ")[1] for line in progress] == ["5 of 20)", "10 of 20)", "15 of 20)",
                                                                            "20 of 20)"]


class Interrupted(Exception):
    pass


def test_an_interrupted_run_keeps_its_chunks_and_the_next_run_resumes(tmp_path, monkeypatch):
    texts = [f"text {i}" for i in range(50)]
    monkeypatch.setattr(embedders, "CHUNK_TEXTS", 10)
    calls = []

    class Failing(HashingEmbedder):
        def embed(self, batch):
            calls.append(len(batch))
            if sum(calls) > 35:
                raise Interrupted
            return super().embed(batch)

    with pytest.raises(Interrupted):
        embed_items(texts, Failing(8), tmp_path / "c", batch_size=5)
    assert len(embedders._cache_parts(embedders._cache_path(tmp_path / "c", HashingEmbedder(8)))) == 3
    calls.clear()
    got = embed_items(texts, Failing(8), tmp_path / "c", batch_size=5)  # only the 20 not in a chunk are embedded
    assert sum(calls) == 20 and np.allclose(got, embed_items(texts, HashingEmbedder(8), tmp_path / "fresh"))
    assert embedders._cache_parts(embedders._cache_path(tmp_path / "c", HashingEmbedder(8))) == []
