"""Resumable fits: a killed `rqgmm fit --checkpoint` resumes to the uninterrupted model."""

import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch
from conftest import make_mixture

import rqgmm
from rqgmm import RQGMM, RQKMeans
from rqgmm.errors import InputError


@pytest.fixture(scope="module")
def data():
    return make_mixture(n_per=150, k=12, d=10, seed=31, spread=2.0)[0].astype(np.float32)


def _fit(cls, X, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(levels=3, codebook_size=8, random_state=0, max_iter=12, tol=0.0, progress=False).fit(X, **kwargs)


def _assert_same_model(a, b):
    sa, sb = a.state_tensors(), b.state_tensors()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("cls", [RQGMM, RQKMeans], ids=lambda c: c.method)
def test_resume_from_every_saved_state_gives_the_uninterrupted_model(cls, data, tmp_path):
    reference = _fit(cls, data)
    saved = []  # every state the checkpoint held during the fit, as file copies
    ckpt = tmp_path / "ckpt"
    from rqgmm.tokenizers import checkpoint as module

    real_write = module.FitCheckpoint._write

    def spy(self, name, state, tensors):
        real_write(self, name, state, tensors)
        snapshot = tmp_path / f"snap{len(saved)}"
        snapshot.mkdir()
        for f in ckpt.iterdir():
            (snapshot / f.name).write_bytes(f.read_bytes())
        saved.append(snapshot)

    module.FitCheckpoint._write = spy
    try:
        _assert_same_model(_fit(cls, data, checkpoint=ckpt), reference)
    finally:
        module.FitCheckpoint._write = real_write
    assert len(saved) >= 4  # mid-level progress and completed levels
    for snapshot in saved:
        _assert_same_model(_fit(cls, data, checkpoint=snapshot), reference)


def test_checkpoint_of_another_fit_is_refused(data, tmp_path):
    _fit(RQGMM, data, checkpoint=tmp_path / "ck")
    with pytest.raises(InputError, match="was written for a different fit"):
        _fit(RQGMM, data[::-1].copy(), checkpoint=tmp_path / "ck")
    with pytest.raises(InputError, match="was written for a different fit"):
        _fit(RQKMeans, data, checkpoint=tmp_path / "ck")


@pytest.mark.slow
def test_killed_cli_fit_resumes_to_the_same_model(data, tmp_path):
    X = np.concatenate([data] * 20)  # long enough to be killed mid-way
    np.save(tmp_path / "x.npy", X)
    cmd = [sys.executable, "-m", "rqgmm", "fit", "x.npy", "--levels", "3", "--codebook-size", "16",
           "--max-iter", "40", "--seed", "1", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([*cmd, "--out", "ref"], cwd=tmp_path, env=env, check=True, capture_output=True)
    rng = np.random.default_rng(0)
    for attempt in range(3):
        proc = subprocess.Popen([*cmd, "--checkpoint", "ck", "--out", "resumed"], cwd=tmp_path, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2.0 + rng.uniform(0, 2.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = subprocess.run([*cmd, "--checkpoint", "ck", "--out", "resumed"], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    _assert_same_model(rqgmm.load(tmp_path / "resumed"), rqgmm.load(tmp_path / "ref"))
