"""Odd inputs that an independent suite outside the repository (issue 29) found broken, each kept as a test:
every verb refuses them with exit 2 and one stderr line, writes nothing and leaves its inputs unchanged."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rqgmm.cli import main

N, D = 40, 6


def _embeddings(rng) -> pa.Table:
    return pa.table({"item_id": np.arange(N), "embedding": pa.array(list(rng.normal(size=(N, D)).astype(np.float32)),
                                                                     pa.list_(pa.float32()))})


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("odd")
    rng = np.random.default_rng(0)
    emb = _embeddings(rng)
    pq.write_table(emb, d / "emb.parquet")
    pq.write_table(pa.Table.from_arrays([emb["item_id"], emb["embedding"], emb["embedding"]],
                                        names=["item_id", "embedding", "embedding"]), d / "emb_twice.parquet")
    rows = 400
    log = pa.table({"user_id": rng.integers(0, 20, rows), "item_id": rng.integers(0, N, rows),
                    "label": (rng.random(rows) < 0.4).astype(np.int64), "timestamp": np.arange(rows)})
    pq.write_table(log, d / "log.parquet")
    pq.write_table(pa.Table.from_arrays([*log.columns, log["label"]], names=[*log.column_names, "label"]),
                   d / "log_twice.parquet")
    assert main(["fit", str(d / "emb.parquet"), "--levels", "2", "--codebook-size", "4", "--max-iter", "3",
                 "--out", str(d / "model"), "--quiet"]) == 0
    assert main(["encode", str(d / "model"), str(d / "emb.parquet"), "--out", str(d / "codes.parquet"),
                 "--quiet"]) == 0
    return d


def _tree(d) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("argv, message", [
    (["fit", "{d}/emb_twice.parquet", "--levels", "2", "--codebook-size", "4", "--out", "{d}/m2"], "emb_twice"),
    (["encode", "{d}/model", "{d}/emb_twice.parquet", "--out", "{d}/c2.parquet"], "emb_twice"),
    (["report", "{d}/emb_twice.parquet", "{d}/codes.parquet"], "emb_twice"),
    (["publish", "{d}/model", "{d}/emb_twice.parquet", "--store", "{d}/s2"], "emb_twice"),
    (["evaluate", "{d}/log.parquet", "--items", "{d}/emb_twice.parquet", "--out", "{d}/o2", "--quick"], "emb_twice"),
    (["evaluate", "{d}/log_twice.parquet", "--items", "{d}/emb.parquet", "--out", "{d}/o2", "--quick"], "log_twice"),
    (["report", "{d}/emb.parquet", "{d}/codes.parquet", "--interactions", "{d}/log_twice.parquet"], "log_twice"),
])
def test_a_column_named_twice_is_refused_in_one_line(folder, capsys, argv, message):
    """Arrow cannot tell two columns of one name apart: each verb was a KeyError traceback (exit 1)."""
    before = _tree(folder)
    capsys.readouterr()
    code = main([a.format(d=folder) for a in argv])
    err = capsys.readouterr().err
    name = "label" if message == "log_twice" else "embedding"
    assert code == 2 and err.count("\n") == 1, err
    assert f"{message}.parquet has 2 columns named {name!r}; rename all but one of them" in err
    assert _tree(folder) == before


def _refused(argv: list[str], capsys) -> str:
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    return err


def test_evaluate_refuses_rows_without_a_user(folder, capsys, tmp_path):
    """Rows of null users were taken for one user's (exit 0); now refused like missing times."""
    log = pq.read_table(folder / "log.parquet")
    users = log.column("user_id").to_pylist()
    pq.write_table(log.set_column(0, "user_id", pa.array([None, *users[1:]], pa.int64())), tmp_path / "log.parquet")
    err = _refused(["evaluate", str(tmp_path / "log.parquet"), "--items", str(folder / "emb.parquet"), "--out",
                    str(tmp_path / "o"), "--quick"], capsys)
    assert "user column 'user_id' has missing values; fill or drop those rows" in err
    assert not (tmp_path / "o").exists()


def test_evaluate_names_items_without_an_id(folder, capsys, tmp_path):
    """An item with a null id was reported as 'duplicate or missing values []'."""
    emb = pq.read_table(folder / "emb.parquet")
    ids = emb.column("item_id").to_pylist()
    pq.write_table(emb.set_column(0, "item_id", pa.array([None, *ids[1:]], pa.int64())), tmp_path / "items.parquet")
    err = _refused(["evaluate", str(folder / "log.parquet"), "--items", str(tmp_path / "items.parquet"), "--out",
                    str(tmp_path / "o"), "--quick"], capsys)
    assert "the items table has 1 row(s) without an 'item_id' value" in err


def test_an_embedding_path_that_is_a_directory_is_called_one(capsys, tmp_path):
    """It was called a file that 'does not exist'."""
    (tmp_path / "emb.parquet").mkdir()
    err = _refused(["fit", str(tmp_path / "emb.parquet"), "--out", str(tmp_path / "m")], capsys)
    assert f"embedding file {tmp_path / 'emb.parquet'} is a directory" in err


@pytest.mark.parametrize("extra, message", [
    (["--device", "cuda:99"], "--device cuda:99"), (["--device", "gpu"], "--device 'gpu' is not a device name"),
    (["--embedder", "nope"], "unknown --embedder 'nope'"), (["--dataset", "nope"], "unknown dataset 'nope'"),
    (["--out", "/proc/rqgmm-odd/out"], "/proc/rqgmm-odd"),
])
def test_benchmark_refuses_before_loading_the_data(capsys, tmp_path, monkeypatch, extra, message):
    """Each was refused only after MovieLens was loaded and embedded (2-3 log lines first), an --out the
    system will not write to only after the whole study."""
    import rqgmm.evaluate.study as study

    monkeypatch.setattr(study, "movielens_tables", lambda *a: pytest.fail("the data was loaded before the refusal"))
    monkeypatch.chdir(tmp_path)
    err = _refused(["benchmark", "--out", "b", "--quick", "--max-items", "50", "--embedder", "hashing-32", *extra],
                   capsys)
    assert message in err and list(tmp_path.iterdir()) == []
