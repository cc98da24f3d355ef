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


def test_a_gpu_group_has_a_cpu_backend_and_collectives_refuse_a_tensor_off_the_source_device():
    """The first NCCL collective crashed on a CPU tensor: both halves of that failure are closed."""
    from rqgmm.runtime.parallel import backend_for
    from rqgmm.runtime.source import RowSource

    assert backend_for("cuda:1") == "cpu:gloo,cuda:nccl" and backend_for("cpu") == "gloo"
    source = RowSource(np.zeros((4, 2), np.float32), dtype=torch.float32, device="cpu", chunk_size=None)
    source.sharded = True  # as in a group; the check comes before any collective
    with pytest.raises(RuntimeError, match="a collective got a tensor on meta, but this group exchanges tensors on cpu"):
        source.all_reduce(torch.zeros(3, device="meta"))
    with pytest.raises(RuntimeError, match="tensor on meta"):
        source.gather_rows(torch.zeros(2, 2, device="meta"))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["rqgmm", "rqkmeans", "prqkmeans"])
def test_two_gloo_ranks_with_uneven_shards_smaller_than_k(method, tmp_path):
    """13 rows over 2 ranks (6 and 7, each fewer than K = 8): the codes of a single process."""
    X = make_mixture(n_per=4, k=4, d=6, seed=5, spread=3.0)[0][:13].astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    common = ["fit", "x.npy", "--method", method, "--levels", "2", "--codebook-size", "8", "--seed", "1", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RQGMM_DIST_TIMEOUT": "60"}
    single = subprocess.run([sys.executable, "-m", "rqgmm", *common, "--out", "single"], cwd=tmp_path, env=env,
                            capture_output=True, text=True)
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                          "--master-port", "29534", "-m", "rqgmm", *common, "--out", "ddp"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr
    a, b = rqgmm.load(tmp_path / "single"), rqgmm.load(tmp_path / "ddp")
    np.testing.assert_array_equal(a.encode(X), b.encode(X))


def _descendants(pid: int) -> list[int]:
    """Process ids below ``pid`` (Linux /proc)."""
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in os.listdir(f"/proc/{parent}/task"):
            try:
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    kids = [int(c) for c in f.read().split()]
            except OSError:
                kids = []
            out += kids
            todo += kids
    return out


def _is_rank(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return b"LOCAL_RANK=1" in f.read().split(b"\0")
    except OSError:
        return False


@pytest.mark.slow
def test_a_rank_killed_mid_fit_ends_the_run_with_an_error_not_a_hang(tmp_path):
    import signal
    import time

    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(100_000, 32)).astype(np.float32))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RQGMM_DIST_TIMEOUT": "30"}
    run = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                            "29535", "-m", "rqgmm", "fit", "x.npy", "--levels", "3", "--codebook-size", "256",
                            "--max-iter", "500", "--seed", "0", "--quiet", "--out", "model"],
                           cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    victim = None
    while victim is None and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.5)
        victim = next((p for p in _descendants(run.pid) if _is_rank(p)), None)
    assert victim is not None, "rank 1 never started"
    time.sleep(6.0)  # inside the fit (the whole fit takes about 30 s on a 2-core machine)
    os.kill(victim, signal.SIGKILL)
    _, err = run.communicate(timeout=120)  # a hang fails here
    assert run.returncode != 0
    assert not (tmp_path / "model").exists()


def test_kept_residuals_give_the_codes_of_recomputed_ones(data, monkeypatch):
    """On a GPU the residuals of each level are computed once and kept; the codes must not change."""
    from rqgmm.tokenizers import walk

    X = data.astype(np.float32)
    fits = {}
    for keep in (False, True):
        monkeypatch.setattr(walk, "keeps_residuals", lambda base, keep=keep: keep)
        for cls in (RQGMM, rqgmm.RQKMeans, rqgmm.PRQKMeans):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fits[keep, cls] = cls(levels=3, codebook_size=6, random_state=0, chunk_size=97, progress=False).fit(X)
    for cls in (RQGMM, rqgmm.RQKMeans, rqgmm.PRQKMeans):
        np.testing.assert_array_equal(fits[True, cls].encode(X), fits[False, cls].encode(X))
