"""Parquet embeddings are read in record batches, never as one table, with the in-memory path's results."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import rqgmm
from rqgmm.files import formats as io
from rqgmm.runtime import source
from rqgmm.cli import main
from rqgmm.ids.codes import read_codes


@pytest.fixture
def small_batches(monkeypatch):
    monkeypatch.setattr(io, "PARQUET_BATCH_ROWS", 7)


def _write(path, ids, X):
    pq.write_table(pa.table({"item_id": ids, "embedding": list(X)}), path, row_group_size=11)


def test_fit_and_encode_in_batches_give_the_in_memory_codes(tmp_path, small_batches):
    X = np.random.default_rng(2).normal(size=(150, 5)).astype(np.float32)
    ids = np.arange(1000, 1150)[::-1]
    _write(tmp_path / "x.parquet", ids, X)
    assert main(["fit", str(tmp_path / "x.parquet"), "--levels", "2", "--codebook-size", "4", "--seed", "0",
                 "--quiet", "--out", str(tmp_path / "m")]) == 0
    assert main(["encode", str(tmp_path / "m"), str(tmp_path / "x.parquet"), "--quiet",
                 "--out", str(tmp_path / "c.parquet")]) == 0
    library = rqgmm.RQGMM(levels=2, codebook_size=4, random_state=0, progress=False).fit(X)
    table = read_codes(tmp_path / "c.parquet")
    np.testing.assert_array_equal(table.codes, library.encode(X))
    np.testing.assert_array_equal(table.item_ids, ids)
    read_ids, read_X = io.read_embeddings(tmp_path / "x.parquet")
    np.testing.assert_array_equal(read_X, X)


def test_a_bad_row_in_a_later_batch_is_named_by_its_row_in_the_file(tmp_path, small_batches, capsys):
    X = np.random.default_rng(3).normal(size=(40, 5)).astype(np.float32)
    rqgmm.RQGMM(levels=1, codebook_size=4, random_state=0, progress=False).fit(X).save(tmp_path / "m")
    X[23, 1] = np.nan
    _write(tmp_path / "x.parquet", np.arange(40), X)
    code = main(["encode", str(tmp_path / "m"), str(tmp_path / "x.parquet"), "--out", str(tmp_path / "c.parquet")])
    assert code == 2
    assert "has NaN or Inf values in 1 of 40 rows (rows 23)" in capsys.readouterr().err
    assert not (tmp_path / "c.parquet").exists()


def test_an_item_id_repeated_across_batches_is_refused(tmp_path, small_batches, capsys):
    X = np.random.default_rng(4).normal(size=(20, 5)).astype(np.float32)
    rqgmm.RQGMM(levels=1, codebook_size=4, random_state=0, progress=False).fit(X).save(tmp_path / "m")
    ids = np.arange(20)
    ids[15] = 2  # the first batch holds rows 0-6
    _write(tmp_path / "x.parquet", ids, X)
    for argv in (["encode", str(tmp_path / "m"), str(tmp_path / "x.parquet"), "--out", str(tmp_path / "c.parquet")],
                 ["fit", str(tmp_path / "x.parquet"), "--out", str(tmp_path / "m2")]):
        assert main(argv) == 2
        assert "has duplicate item_id values; each item must appear once" in capsys.readouterr().err
    assert not (tmp_path / "c.parquet").exists() and not (tmp_path / "m2").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (run on the device machine)")
@pytest.mark.parametrize("stored", ["float16", "float32", "float64", ">f4"])
@pytest.mark.parametrize("resident", [True, False])
def test_memory_mapped_rows_reach_the_gpu_unchanged(tmp_path, monkeypatch, stored, resident):
    """Rows cross in their stored dtype (staged in several blocks, both buffers reused) and are converted on the GPU
    to exactly the values numpy's conversion gives."""
    monkeypatch.setattr(source, "STAGING_BYTES", 4096)
    X = np.random.default_rng(0).normal(size=(1000, 7)).astype(stored)
    np.save(tmp_path / "x.npy", X)
    rows = source.RowSource(np.load(tmp_path / "x.npy", mmap_mode="r"), dtype=torch.float32,
                            device=torch.device("cuda"), chunk_size=300, resident=resident)
    assert rows.resident_ == resident
    got = torch.cat(list(rows.chunks())).cpu()
    torch.testing.assert_close(got, torch.from_numpy(X.astype(np.float32)), rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (run on the device machine)")
@pytest.mark.parametrize("cls", [rqgmm.RQGMM, rqgmm.RQKMeans])
def test_a_streamed_memory_map_encodes_and_fits_as_the_rows_in_gpu_memory(tmp_path, monkeypatch, cls):
    """Through the pinned buffers (several blocks per chunk, chunks reusing both buffers), a memory map that does not
    stay on the GPU gives the codes and the fitted model of the same rows held in GPU memory."""
    monkeypatch.setattr(source, "STAGING_BYTES", 2048)
    X = np.random.default_rng(3).normal(size=(3000, 6)).astype(np.float16)
    np.save(tmp_path / "x.npy", X)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    in_gpu = torch.from_numpy(X.astype(np.float32)).cuda()
    make = lambda: cls(levels=2, codebook_size=5, random_state=0, max_iter=4, chunk_size=700, device="cuda")
    model = make().fit(in_gpu)
    monkeypatch.setattr(source, "RESIDENT_SHARE", 0.0)  # stream every pass
    np.testing.assert_array_equal(model.encode(mapped), model.encode(in_gpu).cpu().numpy())
    streamed = make().fit(mapped)
    torch.testing.assert_close(streamed.levels_[0].codebook, model.levels_[0].codebook)
