"""One EM code path for in-memory, chunked, memory-mapped and data-parallel fitting."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from conftest import make_mixture

import rqgmm
from rqgmm import RQGMM, DiagonalGMM


@pytest.fixture(scope="module")
def data():
    return make_mixture(n_per=100, k=10, d=8, seed=21, spread=3.0)[0]  # N = 1000


def _fit_gmm(X, chunk_size):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DiagonalGMM(6, max_iter=15, tol=0.0, random_state=0, dtype="float64", chunk_size=chunk_size,
                           progress=False).fit(X)


@pytest.mark.parametrize("chunk_size", [7, 333, 1000, 4096])
def test_chunked_em_equals_one_chunk_em(data, chunk_size):
    ref = _fit_gmm(data, chunk_size=len(data))
    got = _fit_gmm(data, chunk_size=chunk_size)
    for name in ("means_", "variances_", "weights_"):
        np.testing.assert_allclose(getattr(got, name).numpy(), getattr(ref, name).numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.history_, ref.history_, rtol=1e-9)


def test_memory_mapped_input_gives_the_in_memory_codes(data, tmp_path):
    X = data.astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = RQGMM(levels=2, codebook_size=8, random_state=0, chunk_size=128, progress=False).fit(X)
        b = RQGMM(levels=2, codebook_size=8, random_state=0, chunk_size=128, progress=False).fit(mapped)
    np.testing.assert_array_equal(a.encode(X), b.encode(mapped))


def test_sampled_initialisation_on_large_inputs(data):
    """With more rows than the initialisation sample, the fit still covers every component."""
    X = np.concatenate([data] * 3).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gmm = DiagonalGMM(8, init_sample_size=500, random_state=0, progress=False).fit(X)
    assert len(np.unique(gmm.predict(X))) == 8
    assert np.isfinite(gmm.history_).all()


@pytest.mark.slow
def test_torchrun_two_ranks_gloo_gives_single_process_codes(data, tmp_path):
    X = data.astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    common = ["fit", "x.npy", "--levels", "2", "--codebook-size", "8", "--seed", "3", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "rqgmm", *common, "--out", "single"], cwd=tmp_path, env=env,
                            capture_output=True, text=True)
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                          "--master-port", "29533", "-m", "rqgmm", *common, "--out", "ddp"],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert ddp.returncode == 0, ddp.stderr
    a, b = rqgmm.load(tmp_path / "single"), rqgmm.load(tmp_path / "ddp")
    np.testing.assert_array_equal(a.encode(X), b.encode(X))
    for key, value in a.state_tensors().items():
        # float64 sums added in another order, then rounded to float32
        torch.testing.assert_close(b.state_tensors()[key], value, rtol=1e-4, atol=1e-5)
