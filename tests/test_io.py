"""Model files, embeddings and codes files: formats, checks and atomic writes."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import rqgmm
from rqgmm.files import formats as io
from rqgmm.ids.codes import CodesTable, read_codes, write_codes
from rqgmm.errors import InputError


@pytest.fixture
def model_dir(tmp_path):
    X = np.random.default_rng(0).normal(size=(300, 6)).astype(np.float32)
    rqgmm.RQKMeans(levels=2, codebook_size=4, random_state=0, progress=False).fit(X).save(tmp_path / "m")
    return tmp_path / "m"


def test_model_directory_layout(model_dir):
    assert sorted(p.name for p in model_dir.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((model_dir / "config.json").read_text())
    assert config["method"] == "rqkmeans" and config["format_version"] == io.FORMAT_VERSION
    assert config["codebook_size"] == [4, 4] and config["n_features"] == 6
    assert not list(model_dir.parent.glob(".m.tmp-*"))


def test_future_version_refused(model_dir):
    config = json.loads((model_dir / "config.json").read_text())
    config["format_version"] = io.FORMAT_VERSION + 1
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="newer than this release reads"):
        rqgmm.load(model_dir)


def test_corrupt_files_refused(model_dir):
    data = (model_dir / "model.safetensors").read_bytes()
    (model_dir / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated or corrupt"):
        rqgmm.load(model_dir)
    (model_dir / "config.json").write_text("{not json")
    with pytest.raises(InputError, match="is not valid JSON"):
        rqgmm.load(model_dir)


def test_overwrite_is_atomic(model_dir):
    X = np.random.default_rng(1).normal(size=(200, 6)).astype(np.float32)
    rqgmm.RQGMM(levels=1, codebook_size=3, random_state=0, progress=False).fit(X).save(model_dir)
    assert json.loads((model_dir / "config.json").read_text())["method"] == "rqgmm"
    assert sorted(p.name for p in model_dir.parent.iterdir()) == ["m"]


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with io.atomic_output(tmp_path / "codes.npy") as tmp:
            np.save(tmp, np.zeros(3))
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_parquet_embeddings(tmp_path):
    X = np.arange(12, dtype=np.float32).reshape(4, 3)
    pq.write_table(pa.table({"item_id": [7, 8, 9, 10], "embedding": list(X)}), tmp_path / "e.parquet")
    ids, Y = io.read_embeddings(tmp_path / "e.parquet")
    np.testing.assert_array_equal(ids, [7, 8, 9, 10])
    np.testing.assert_array_equal(Y, X)


@pytest.mark.parametrize(
    "table, expect",
    [
        ({"item_id": [1, 1], "embedding": [[0.0], [1.0]]}, "duplicate item_id"),
        ({"item_id": [1, 2], "embedding": [[0.0], [1.0, 2.0]]}, "ragged"),
        ({"item_id": [1, 2], "embedding": [["a"], ["b"]]}, "must hold numbers"),
        ({"id": [1], "embedding": [[0.0]]}, "lacks column"),
    ],
)
def test_bad_parquet_embeddings(tmp_path, table, expect):
    pq.write_table(pa.table(table), tmp_path / "e.parquet")
    with pytest.raises(InputError, match=expect):
        io.read_embeddings(tmp_path / "e.parquet")


def test_npy_is_memory_mapped(tmp_path):
    np.save(tmp_path / "e.npy", np.ones((5, 2), dtype=np.float32))
    _, X = io.read_embeddings(tmp_path / "e.npy")
    assert isinstance(X, np.memmap)


def test_codes_round_trip(tmp_path):
    codes = np.array([[1, 2], [3, 4]])
    write_codes(tmp_path / "c.parquet", CodesTable(codes, np.array([10, 11]), suffix=np.array([0, 0])))
    back = read_codes(tmp_path / "c.parquet")
    np.testing.assert_array_equal(back.codes, codes)
    np.testing.assert_array_equal(back.item_ids, [10, 11])
    write_codes(tmp_path / "c.npy", CodesTable(codes))
    assert read_codes(tmp_path / "c.npy").codes.dtype == np.int64
