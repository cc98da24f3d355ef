"""The command line end to end, and its handling of bad input."""

import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import make_mixture, write_embeddings

import rqgmm
from rqgmm.ids.metrics import rmse
from rqgmm.tokenizers.base import tokenizer_class


def run(*args, cwd):
    proc = subprocess.run([sys.executable, "-m", "rqgmm", *map(str, args)], cwd=cwd, capture_output=True, text=True)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    X = make_mixture(n_per=60, k=8, d=12, seed=2)[0].astype(np.float32)
    write_embeddings(d, X, first_id=1000)
    code, _, err = run("fit", "x.npy", "--method", "rqgmm", "--levels", 2, "--codebook-size", 8, "--quiet",
                       "--out", "model", cwd=d)
    assert code == 0, err
    return d


def test_fit_encode_report_end_to_end(workdir):
    code, _, err = run("encode", "model", "x.parquet", "--out", "codes.parquet", "--quiet", cwd=workdir)
    assert code == 0, err
    table = pq.read_table(workdir / "codes.parquet")
    assert table.column_names == ["item_id", "c1", "c2"]
    code, out, err = run("report", "x.parquet", "codes.parquet", "--model", "model", "--json", "--quiet", cwd=workdir)
    assert code == 0, err
    result = json.loads(out)
    X = np.load(workdir / "x.npy")
    model = rqgmm.load(workdir / "model")
    assert result["rmse"] == pytest.approx(rmse(X, model.decode(model.encode(X))), rel=1e-12)
    assert result["levels"] == 2 and result["codebook_size"] == [8, 8] and result["n_items"] == len(X)


def test_unique_suffix_column(workdir):
    code, _, err = run("encode", "model", "x.parquet", "--out", "u.parquet", "--unique", "--quiet", cwd=workdir)
    assert code == 0, err
    t = pq.read_table(workdir / "u.parquet").to_pandas()
    plain = rqgmm.load(workdir / "model").encode(np.load(workdir / "x.npy"))
    np.testing.assert_array_equal(t[["c1", "c2"]].to_numpy(), plain)
    assert not t.duplicated(["c1", "c2", "suffix"]).any()


def test_npy_codes_and_every_method(workdir):
    for method in rqgmm.methods():
        levels = tokenizer_class(method).fixed_levels or 2
        code, _, err = run("fit", "x.npy", "--method", method, "--levels", levels, "--codebook-size", 4,
                           "--max-iter", 3, "--quiet", "--out", f"m-{method}", cwd=workdir)
        assert code == 0, (method, err)
        code, _, err = run("encode", f"m-{method}", "x.npy", "--out", f"{method}.npy", "--quiet", cwd=workdir)
        assert code == 0, (method, err)
        assert np.load(workdir / f"{method}.npy").shape == (480, levels)


def test_vqvae_with_several_levels_is_refused(workdir):
    result = run("fit", "x.npy", "--method", "vqvae", "--levels", 3, "--out", "vq3", cwd=workdir)
    _assert_clean_failure(*result, "VQVAE has exactly one level, got levels=3", workdir, "vq3")


def _assert_clean_failure(code, out, err, expect, workdir, output):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rqgmm: error: ") and expect in lines[0]
    assert "Traceback" not in err
    assert not (workdir / output).exists()


@pytest.mark.parametrize(
    "case, expect",
    [
        ("nan", "nan.npy has NaN or Inf values in 2 of 480 rows (rows 5, 9)"),
        ("empty", "is empty"),
        ("missing", "does not exist"),
        ("method", "unknown method 'nope'; choose one of"),
        ("zero_bytes", "is not a readable .npy array"),
    ],
)
def test_fit_bad_input(workdir, case, expect):
    X = np.load(workdir / "x.npy")
    emb = {"nan": "nan.npy", "empty": "empty.npy", "missing": "missing.npy", "method": "x.npy", "zero_bytes": "zero.npy"}[case]
    if case == "nan":
        X[[5, 9], 3] = np.nan
        np.save(workdir / emb, X)
    elif case == "empty":
        np.save(workdir / emb, np.zeros((0, 12), dtype=np.float32))
    elif case == "zero_bytes":
        (workdir / emb).write_bytes(b"")
    method = "nope" if case == "method" else "rqgmm"
    out_dir = f"bad-{case}"
    _assert_clean_failure(*run("fit", emb, "--method", method, "--out", out_dir, cwd=workdir), expect, workdir, out_dir)


def test_encode_wrong_dimension(workdir):
    np.save(workdir / "wide.npy", np.zeros((10, 13), dtype=np.float32))
    result = run("encode", "model", "wide.npy", "--out", "wide-codes.parquet", cwd=workdir)
    _assert_clean_failure(*result, "has 13 features, but the model is expecting 12 features", workdir, "wide-codes.parquet")


def test_encode_nan_writes_nothing(workdir):
    X = np.load(workdir / "x.npy")
    X[0, 0] = np.inf
    np.save(workdir / "inf.npy", X)
    result = run("encode", "model", "inf.npy", "--out", "inf-codes.npy", cwd=workdir)
    _assert_clean_failure(*result, "NaN or Inf values in 1 of 480 rows (rows 0)", workdir, "inf-codes.npy")


def test_usage_error_is_one_line(workdir):
    result = run("fit", "x.npy", cwd=workdir)
    _assert_clean_failure(*result, "the following arguments are required: --out", workdir, "nothing")


def test_missing_model(workdir):
    result = run("encode", "no-model", "x.npy", "--out", "c.npy", cwd=workdir)
    _assert_clean_failure(*result, "model directory no-model does not exist", workdir, "c.npy")
