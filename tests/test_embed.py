"""``rqgmm embed``: item text → the item_id + embedding parquet that fit, encode and evaluate read.

The hashing embedder (``--model hashing-<dim>``) stands in for the real model
except in one test, which embeds a handful of texts with MiniLM.
"""

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rqgmm import cli

from rqgmm.files import formats as io
from rqgmm.data.embedders import HashingEmbedder, SentenceTransformerEmbedder, embed_items
from rqgmm.data.item_texts import join_parts
from rqgmm.errors import InputError

TITLES = ["Toy Story", "Toy Story 2", "Heat", "Sense and Sensibility", "Nosferatu", "Casino"]
DESCRIPTIONS = ["A cowboy doll is jealous.", None, "  A heist goes wrong!", "", "A vampire", "Las Vegas, 1973"]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RQGMM_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def items(tmp_path):
    path = tmp_path / "items.parquet"
    pq.write_table(pa.table({"item_id": np.arange(10, 16), "title": TITLES, "description": DESCRIPTIONS}), path)
    return path


def run(capsys, *argv) -> tuple[int, str]:
    code = cli.main(["embed", *map(str, argv)])
    return code, capsys.readouterr().err


def digest(path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def test_join_parts_skips_missing_parts_and_ends_each_sentence_once():
    assert join_parts(["Heat", "A heist goes wrong."]) == "Heat. A heist goes wrong."
    assert join_parts(["Heat!", " A heist. "]) == "Heat! A heist."
    assert join_parts([" Heat ", None, "", "  "]) == "Heat"
    assert join_parts([None, "", " "]) == ""


def test_embed_writes_what_fit_and_encode_read(items, tmp_path, capsys):
    out = tmp_path / "emb.parquet"
    before = digest(items)
    code, err = run(capsys, items, "--text", "title,description", "--out", out, "--model", "hashing-16")
    assert code == 0, err
    ids, X = io.read_embeddings(out)
    texts = [join_parts(parts) for parts in zip(TITLES, DESCRIPTIONS)]
    assert texts[1] == "Toy Story 2" and texts[2] == "Heat. A heist goes wrong!"
    assert ids.tolist() == list(range(10, 16)) and X.dtype == np.float32
    np.testing.assert_array_equal(X, HashingEmbedder(16).embed(texts))
    assert pq.read_schema(out).field("embedding").type == pa.list_(pa.float32())
    assert digest(items) == before
    assert cli.main(["fit", str(out), "--levels", "2", "--codebook-size", "2", "--out", str(tmp_path / "m")]) == 0
    assert cli.main(["encode", str(tmp_path / "m"), str(out), "--out", str(tmp_path / "c.parquet")]) == 0
    assert pq.read_table(tmp_path / "c.parquet")["item_id"].to_pylist() == ids.tolist()


def test_embed_reads_odd_encodings_and_writes_the_ids_as_item_id(tmp_path, capsys):
    path, out = tmp_path / "items.parquet", tmp_path / "emb.parquet"
    pq.write_table(pa.table({"sku": pa.array([f"s{i}" for i in range(4)]).dictionary_encode(),
                             "name": pa.array(TITLES[:4], pa.large_string()),
                             "tag": pa.array(["a", "b", "a", "b"]).dictionary_encode()}), path)
    code, err = run(capsys, path, "--text", "name, tag", "--item", "sku", "--out", out, "--model", "hashing-8")
    assert code == 0, err
    ids, X = io.read_embeddings(out)
    assert ids.tolist() == ["s0", "s1", "s2", "s3"]
    np.testing.assert_array_equal(X, HashingEmbedder(8).embed([f"{t}. {g}" for t, g in zip(TITLES, "abab")]))


def test_embed_is_quiet_with_quiet_and_draws_no_bar_off_a_terminal(items, tmp_path, capsys):
    code, err = run(capsys, items, "--text", "title", "--out", tmp_path / "a.parquet", "--model", "hashing-8",
                    "--batch-size", "2")
    assert code == 0 and err.splitlines()[-1].startswith("rqgmm: embedded 6 items with hashing-8")
    assert "\r" not in err and "text/s" not in err  # stderr is not a terminal: no progress bar
    code, err = run(capsys, items, "--text", "title", "--out", tmp_path / "b.parquet", "--model", "hashing-8",
                    "--quiet")
    assert code == 0 and err == ""


def test_embed_items_batches_longest_first_and_matches_one_call(tmp_path):
    calls = []

    class Recording(HashingEmbedder):
        def embed(self, texts):
            calls.append(list(texts))
            return super().embed(texts)

    texts = [*TITLES, TITLES[0]]
    vectors = embed_items(texts, Recording(8), tmp_path, batch_size=4, progress=False)
    assert [len(c) for c in calls] == [4, 2]  # six distinct texts, four per call
    assert [len(t) for t in calls[0] + calls[1]] == sorted(map(len, TITLES), reverse=True)
    np.testing.assert_array_equal(vectors, HashingEmbedder(8).embed(texts))
    with pytest.raises(InputError, match="batch_size must be a positive integer"):
        embed_items(texts, HashingEmbedder(8), tmp_path, batch_size=0)


def _write(path, **columns):
    pq.write_table(pa.table(columns), path)
    return path


BAD = {
    "missing file": (["missing.parquet", "--text", "title"], "items file missing.parquet does not exist"),
    "not parquet": (["notes.txt", "--text", "title"], "is not a readable parquet file"),
    "no text column": (["items.parquet", "--text", "title,plot"], "has no column 'plot' (it has item_id, title"),
    "no item column": (["items.parquet", "--text", "title", "--item", "sku"], "has no column 'sku'"),
    "int text": (["items.parquet", "--text", "item_id"], "text column 'item_id' holds int64, not text"),
    "bytes text": (["bytes.parquet", "--text", "title"], "holds binary, not text (bytes: decode them to UTF-8"),
    "list text": (["lists.parquet", "--text", "title"], "holds list<element: string>, not text"),
    "empty texts": (["items.parquet", "--text", "description"],
                    "2 of 6 items have no text in description (null or empty; first: item 11)"),
    "all-null column": (["nulls.parquet", "--text", "title"], "3 of 3 items have no text in title"),
    "duplicate ids": (["dup.parquet", "--text", "title"], "1 item ids appear more than once in 'item_id' (first: 7"),
    "null ids": (["nullid.parquet", "--text", "title"], "item id column 'item_id' has 1 null values"),
    "float ids": (["floatid.parquet", "--text", "title"], "item id column 'item_id' holds double"),
    "no rows": (["empty.parquet", "--text", "title"], "holds no rows"),
    "column name twice": (["twice.parquet", "--text", "title"], "has 2 columns named 'title'; rename all but one"),
    "column twice": (["items.parquet", "--text", "title,title"], "a column is named twice"),
    "out is input": (["items.parquet", "--text", "title", "--out", "items.parquet"], "is the input items.parquet"),
    "out not parquet": (["items.parquet", "--text", "title", "--out", "emb.npy"], "written as .parquet"),
    "out dir missing": (["items.parquet", "--text", "title", "--out", "nodir/emb.parquet"],
                        "directory nodir does not exist; create it first"),
    "unknown model": (["items.parquet", "--text", "title", "--model", "bert"], "unknown model 'bert'; choose minilm"),
    "no such device": (["items.parquet", "--text", "title", "--device", "cuda:7"], "--device cuda:7"),
    "no text option": (["items.parquet"], "the following arguments are required: --text"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_embed_refuses_bad_input_with_one_line_and_writes_nothing(case, items, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("title\nHeat\n")
    _write(tmp_path / "bytes.parquet", item_id=[1, 2], title=[b"a", b"b"])
    _write(tmp_path / "lists.parquet", item_id=[1, 2], title=[["a"], ["b"]])
    _write(tmp_path / "nulls.parquet", item_id=[1, 2, 3], title=pa.nulls(3))
    _write(tmp_path / "dup.parquet", item_id=[7, 7, 8], title=["a", "b", "c"])
    _write(tmp_path / "nullid.parquet", item_id=[1, None], title=["a", "b"])
    _write(tmp_path / "floatid.parquet", item_id=[1.0, 2.0], title=["a", "b"])
    twice = pa.Table.from_arrays([pa.array([1]), pa.array(["a"]), pa.array(["b"])], ["item_id", "title", "title"])
    pq.write_table(twice, tmp_path / "twice.parquet")
    _write(tmp_path / "empty.parquet", item_id=pa.array([], pa.int64()), title=pa.array([], pa.string()))
    argv, message = BAD[case]
    defaults = {"--out": "emb.parquet", "--model": "hashing-8"}
    argv = [*argv, *(part for flag, value in defaults.items() if flag not in argv for part in (flag, value))]
    before = {p.name: digest(p) for p in tmp_path.iterdir() if p.is_file()}
    code, err = run(capsys, *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("rqgmm: error: "), err
    assert message in err
    assert {p.name: digest(p) for p in tmp_path.iterdir() if p.is_file()} == before
    assert not (tmp_path / "cache").exists()


@pytest.mark.realdata
def test_minilm_embeds_a_handful_of_item_texts(items, tmp_path, capsys):
    out = tmp_path / "emb.parquet"
    code, err = run(capsys, items, "--text", "title", "--out", out, "--quiet")
    assert code == 0, err
    ids, X = io.read_embeddings(out)
    assert X.shape == (6, 384) and ids.tolist() == list(range(10, 16))
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(X, SentenceTransformerEmbedder("minilm").embed(TITLES), atol=1e-5)
    similarity = X @ X.T
    assert similarity[0, 1] == similarity[0, 1:].max()  # the sequel is the nearest title
    assert pq.read_schema(out).metadata[b"rqgmm_embeddings"].startswith(b'{"model": "all-MiniLM-L6-v2", "dim": 384')
