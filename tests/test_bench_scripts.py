"""The benchmark scripts run (on tiny sizes, CPU) and their pieces compute what they claim."""

import math

import numpy as np
import pytest
import torch

from rqgmm import RQGMM, RQKMeans
from rqgmm.bench import balance, gpu, memory, refit, speed
from rqgmm.tokenizers.gmm import DiagonalGMM, accumulate, m_step
from rqgmm.runtime.source import RowSource


def test_speed_and_balance_scripts_run(monkeypatch):
    logged = []
    monkeypatch.setattr(balance.logger, "info", lambda message, *args: logged.append(message % args if args else message))
    balance.main(["--n", "600", "--d", "6", "--levels", "2", "--k", "4", "--clusters", "5"])
    assert any(line.startswith("| rqkmeans | greedy |") for line in logged)
    lines = speed.main(["--n", "1500", "--d", "8", "--k", "4", "--iters", "2", "--repeats", "1"])
    assert any(line.startswith("EM   ratio rqgmm / sklearn") for line in lines)
    assert any(line.startswith("KM     rqgmm") for line in lines)


def test_memory_script_runs(tmp_path, monkeypatch):
    logged = []
    monkeypatch.setattr(memory.logger, "info", lambda message, *args: logged.append(message % args if args else message))
    memory.main(["--n", "3000", "--d", "8", "--k", "4", "--max-iter", "1", "--dir", str(tmp_path)])
    assert any("exit 0" in line and "peak RssAnon" in line for line in logged)


def test_memory_script_streams_an_encode(tmp_path, monkeypatch):
    """--encode: a float16 file fitted on a sample, encoded by the command line, codes checked against the library."""
    logged = []
    monkeypatch.setattr(memory.logger, "info", lambda message, *args: logged.append(message % args if args else message))
    memory.main(["--encode", "--n", "5000", "--d", "6", "--k", "4", "--levels", "2", "--max-iter", "2",
                 "--dtype", "float16", "--sample", "1000", "--check-rows", "700", "--dir", str(tmp_path)])
    assert np.load(tmp_path / "x-5000x6-float16.npy", mmap_mode="r").dtype == np.float16
    assert np.load(tmp_path / "codes.npy").shape == (5000, 2)
    assert any("rqgmm encode exit 0" in line and "peak RssAnon" in line for line in logged)
    assert "streamed codes equal to the library's on 1.0000 of 700 sampled rows" in logged


@pytest.mark.filterwarnings("ignore::rqgmm.ConvergenceWarning")  # max_iter=1 only supplies the start
def test_gpu_anchor_iteration_is_one_em_step():
    """The plain-torch anchor the GPU benchmark times computes the same EM step as DiagonalGMM."""
    X = torch.from_numpy(np.random.default_rng(0).normal(size=(400, 5)))
    level = DiagonalGMM(3, max_iter=1, random_state=0, dtype="float64", reg_covar=1e-6, progress=False).fit(X)
    start = level.params
    anchor = gpu.anchor_iteration(X, start)
    ours = m_step(accumulate(RowSource(X, dtype=X.dtype, device="cpu", chunk_size=None), start), 1e-6, 0.0,
                  torch.float64)
    torch.testing.assert_close(anchor.means, ours.means, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(anchor.weights, ours.weights, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(anchor.variances, ours.variances, rtol=1e-4, atol=1e-6)
    assert gpu.full_id_agreement(np.array([[1, 2], [3, 4]]), np.array([[1, 2], [3, 5]])) == 0.5


def test_refit_figures_on_separated_data():
    rng = np.random.default_rng(1)
    X = (rng.normal(size=(12, 6))[rng.integers(0, 12, 600)] * 5 + rng.normal(size=(600, 6))).astype(np.float32)
    for cls in (RQKMeans, RQGMM):
        same = refit.independent_refits(cls, X, 1, 12)
        assert same["aligned"]["code_changed"][0] <= same["before"]["code_changed"][0]
        warm = refit.warm_refit(cls, X, 1, 12)
        assert warm["old_items"] + warm["new_items"] == 600 and 0.0 <= warm["full_id_kept"] <= 1.0
        collisions = refit.reassigned_collisions(cls, X, 2, 4)
        assert collisions["after_reassign"] <= collisions["collision_rate"]
        assert math.isfinite(collisions["collision_rate"])


def test_ctr_benchmark_prints_trainer_anchor_encoding_and_memory(tmp_path):
    """On a tiny generated log: both trainers, the encoding and the evaluate child's memory are reported."""
    from rqgmm.bench import ctr

    lines = ctr.main(["--rows", "3000", "--batches", "256", "--threads", "1", "--dir", str(tmp_path)])
    trainers = [line for line in lines if line.startswith("batch")]
    assert {line.split()[1] for line in trainers} == {"256", "1024"}  # asked for, and the default for 2,400 rows
    assert all("trainer" in line and "anchor" in line and float(line.split("ratio")[1]) > 0 for line in trainers)
    assert any(line.startswith("encoding:") for line in lines)
    assert any("exit 0" in line and "peak RssAnon" in line for line in lines)



def test_host_memory_script_measures_every_step_and_refuses_a_missing_device(monkeypatch, capsys):
    from rqgmm.bench import host_memory

    logged = []
    monkeypatch.setattr(host_memory.logger, "info", lambda message, *args: logged.append(message % args))
    assert host_memory.main(["--device", "cpu", "--items", "500", "--dim", "4", "--levels", "2",
                             "--codebook-size", "4"]) == 0
    names = [line.split("  ")[0] for line in logged[1:]]
    assert names == ["start", "import torch", "cpu context", "first matrix product", "tokenizers imported",
                     "X 500 x 4 on the host", "first RQ-GMM fit", "its encoding", "an RQ-KMeans fit",
                     "release_free_memory"]
    assert host_memory.heap_mb() is None or host_memory.heap_mb() > 0
    if not torch.cuda.is_available():
        logged.clear()
        assert host_memory.main(["--device", "cuda", "--items", "500"]) == 2
        assert not logged and "--device cuda" in capsys.readouterr().err
