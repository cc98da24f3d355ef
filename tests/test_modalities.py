"""--embedding COL on fit, encode and report: several modalities fused as rqgmm evaluate fuses them."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import rqgmm
from rqgmm.cli import main
from rqgmm.ids.codes import read_codes
from rqgmm.files.modalities import fused


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    d = tmp_path_factory.mktemp("modalities")
    rng = np.random.default_rng(4)
    text = rng.normal(size=(200, 6)).astype(np.float32)
    image = (rng.normal(size=(200, 3)) * 50).astype(np.float32)
    pq.write_table(pa.table({"item_id": np.arange(200), "text": list(text), "image": list(image)}), d / "items.parquet")
    np.save(d / "x.npy", text)
    return d, text, image


def _fit(d, out, *columns):
    flags = [f for c in columns for f in ("--embedding", c)]
    return main(["fit", str(d / "items.parquet"), "--levels", "2", "--codebook-size", "4", "--seed", "0", "--quiet",
                 *flags, "--out", str(d / out)])


def test_two_modalities_are_fused_recorded_and_encoded_alike(items):
    d, text, image = items
    assert _fit(d, "both", "text", "image") == 0
    assert json.loads((d / "both" / "config.json").read_text())["embedding_columns"] == ["text", "image"]
    # encode without --embedding: the model's columns
    assert main(["encode", str(d / "both"), str(d / "items.parquet"), "--quiet", "--out", str(d / "c.parquet")]) == 0
    X = fused({"text": text, "image": image})
    library = rqgmm.RQGMM(levels=2, codebook_size=4, random_state=0, progress=False).fit(X)
    np.testing.assert_array_equal(read_codes(d / "c.parquet").codes, library.encode(X))
    assert rqgmm.load(d / "both").embedding_columns_ == ["text", "image"]


def test_one_named_column_is_used_as_is(items):
    d, text, _ = items
    assert _fit(d, "text", "text") == 0
    library = rqgmm.RQGMM(levels=2, codebook_size=4, random_state=0, progress=False).fit(text)
    np.testing.assert_array_equal(rqgmm.load(d / "text").encode(text), library.encode(text))


@pytest.mark.parametrize("extra, message", [
    (["--embedding", "image"], "was fitted on text,image; encode the same columns"),
])
def test_encode_with_other_columns_is_refused(items, capsys, extra, message):
    d, *_ = items
    if not (d / "both").exists():
        assert _fit(d, "both", "text", "image") == 0
    capsys.readouterr()
    code = main(["encode", str(d / "both"), str(d / "items.parquet"), *extra, "--out", str(d / "bad.parquet")])
    assert code == 2 and message in capsys.readouterr().err
    assert not (d / "bad.parquet").exists()


@pytest.mark.parametrize("columns, message", [
    (["nope"], "lacks column(s) ['nope']; name list columns of it with --embedding (it has item_id, text, image)"),
    (["text", "text"], "--embedding names a column twice (text, text); name each modality once"),
])
def test_bad_columns_are_refused_before_fitting(items, capsys, columns, message):
    d, *_ = items
    capsys.readouterr()
    assert _fit(d, "bad", *columns) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (d / "bad").exists()


def test_embedding_columns_of_a_npy_are_refused(items, capsys):
    d, *_ = items
    code = main(["fit", str(d / "x.npy"), "--embedding", "text", "--out", str(d / "npy-model")])
    assert code == 2 and "--embedding names parquet columns" in capsys.readouterr().err


def test_fusing_in_row_blocks_equals_the_whole_matrix_formula(monkeypatch):
    """Rows are normalised a block at a time (bounded temporaries); the result is the whole-matrix formula, bit
    for bit, across block edges, a zero row included, and the inputs are left unchanged."""
    from rqgmm.files import modalities

    monkeypatch.setattr(modalities, "ROWS", 7)
    rng = np.random.default_rng(1)
    parts = {"text": rng.normal(size=(30, 5)).astype(np.float32), "image": rng.normal(size=(30, 3)) * 40}
    parts["text"][11] = 0.0
    kept = {k: v.copy() for k, v in parts.items()}
    whole = np.concatenate([v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
                            for v in parts.values()], 1).astype(np.float32)
    out = fused(parts)
    assert out.dtype == np.float32 and np.array_equal(out, whole)
    assert all(np.array_equal(parts[k], kept[k]) for k in parts)
