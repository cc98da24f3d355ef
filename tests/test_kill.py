"""Crash-safe outputs: a killed run leaves the old output or the new one, never a partial one.

Two kinds of test:
- fault injection (fast): a forked child writes a model or codes file and SIGKILLs
  itself right after each file-system step of the write, in turn; the output path
  must hold the old output or the complete new one after every step;
- random SIGKILLs (slow): ``python -m rqgmm fit`` and ``encode`` are started as
  subprocesses and killed at seeded random moments spread over their measured run
  time, plus a few kills aimed at the moment the temporary output appears.

A ``.NAME.tmp-*`` may remain beside the output after SIGKILL (nothing can remove it);
the output path itself must never be partial.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

import rqgmm
from rqgmm import RQGMM
from rqgmm.files import formats as io
from rqgmm.ids.codes import CodesTable, read_codes, write_codes

# Subprocesses: one OpenMP thread that does not spin (a shared 2-core machine).
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
N_RANDOM_KILLS = 10  # per verb, plus N_WINDOW_KILLS aimed at the write
N_WINDOW_KILLS = 1


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _fit(X, levels, K, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return RQGMM(levels=levels, codebook_size=K, random_state=seed, max_iter=30, progress=False).fit(X)


def _leftovers(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.glob(f".{path.name}.*"))


# =================================================================== fault injection


def _write_killed_after_step(write, step: int) -> bool:
    """Run ``write()`` in a forked child that SIGKILLs itself right after its step-th
    file-system change (tensor file, config, rename, exchange, removal); True if it was killed."""
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        try:
            count = [0]

            def after(fn):
                def wrapper(*args, **kwargs):
                    out = fn(*args, **kwargs)
                    count[0] += 1
                    if count[0] == step:
                        os.kill(os.getpid(), signal.SIGKILL)
                    return out

                return wrapper

            os.replace, os.rename, shutil.rmtree = after(os.replace), after(os.rename), after(shutil.rmtree)
            io.save_file = after(io.save_file)
            Path.write_text = after(Path.write_text)
            np.save = after(np.save)
            io.pq.write_table = after(io.pq.write_table)
            if hasattr(io, "_exchange"):
                io._exchange = after(io._exchange)
            write()
            os._exit(0)
        except BaseException:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) or os.WEXITSTATUS(status) == 0, status
    return os.WIFSIGNALED(status)


def _same_model(path: Path, ref) -> bool:
    loaded = rqgmm.load(path, method="rqgmm").state_tensors()
    ref = ref.state_tensors()
    return loaded.keys() == ref.keys() and all(torch.equal(loaded[k], ref[k]) for k in ref)


@pytest.mark.parametrize("existing", [False, True], ids=["fresh", "overwrite"])
def test_model_directory_is_old_or_new_after_a_kill_at_every_step(tmp_path, existing):
    X = np.random.default_rng(0).normal(size=(200, 4)).astype(np.float32)
    old, new = _fit(X, 1, 3, seed=1), _fit(X, 2, 4, seed=2)
    steps = 0
    for step in range(1, 20):
        path = tmp_path / f"step{step}" / "model"
        if existing:
            old.save(path)
        killed = _write_killed_after_step(lambda: new.save(path), step)
        if not killed:
            break
        steps += 1
        if existing:
            assert path.is_dir(), f"killed after step {step}: the old model is gone and the new one is not in place"
            assert _same_model(path, old) or _same_model(path, new), f"step {step}: a mixed model"
        else:
            assert not path.exists() or _same_model(path, new), f"step {step}: a partial model"
    assert steps >= 3  # tensors, config, rename at least
    assert _same_model(path, new) and _leftovers(path) == []


@pytest.mark.parametrize("suffix", [".npy", ".parquet"])
def test_codes_file_is_old_or_new_after_a_kill_at_every_step(tmp_path, suffix):
    old, new = np.zeros((50, 1), dtype=np.int64), np.arange(100, dtype=np.int64).reshape(50, 2)
    for step in range(1, 10):
        path = tmp_path / f"step{step}" / f"codes{suffix}"
        write_codes(path, CodesTable(old))
        if not _write_killed_after_step(lambda: write_codes(path, CodesTable(new)), step):
            break
        codes = read_codes(path).codes
        assert np.array_equal(codes, old) or np.array_equal(codes, new), f"step {step}"
    assert np.array_equal(read_codes(path).codes, new) and _leftovers(path) == []


def test_outputs_get_the_usual_permissions(tmp_path):
    """Temporary files are created 0600 (0700 for directories); the renamed output must not keep that."""
    mask = os.umask(0o022)
    os.umask(mask)
    X = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32)
    _fit(X, 1, 2, seed=0).save(tmp_path / "model")
    write_codes(tmp_path / "codes.parquet", CodesTable(np.zeros((3, 1), dtype=np.int64)))
    assert (tmp_path / "model").stat().st_mode & 0o777 == 0o777 & ~mask
    assert (tmp_path / "codes.parquet").stat().st_mode & 0o777 == 0o666 & ~mask


# =================================================================== random SIGKILLs


def _cli(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rqgmm", *map(str, args)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()


def _run_and_kill(args, out: Path, when: tuple[str, float]) -> int:
    """Start the command; SIGKILL it at ``when`` = ("at", seconds) or ("window", delay after
    the temporary output appears). Returns the exit status (-9 when killed)."""
    proc = _cli(*args)
    start = time.monotonic()
    kind, t = when
    if kind == "at":
        while proc.poll() is None and time.monotonic() - start < t:
            time.sleep(0.005)
    else:
        while proc.poll() is None and not _leftovers(out):
            time.sleep(0.002)
        time.sleep(t)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=120)
    return proc.returncode


def _kill_plan(rng: np.random.Generator, duration: float) -> list[tuple[str, float]]:
    """Stratified random moments over [0, 0.8 * duration], then kills aimed at the write."""
    edges = np.linspace(0.0, 0.8 * duration, N_RANDOM_KILLS + 1)
    plan = [("at", float(rng.uniform(lo, hi))) for lo, hi in zip(edges[:-1], edges[1:])]
    return plan + [("window", float(rng.uniform(0.0, 0.002))) for _ in range(N_WINDOW_KILLS)]


@pytest.mark.slow
def test_sigkill_at_random_moments_never_leaves_a_partial_output(tmp_path):
    rng = np.random.default_rng(2026)
    X = (rng.normal(0, 4, (8, 16))[rng.integers(8, size=3000)] + rng.normal(size=(3000, 16))).astype(np.float32)
    X_enc = np.tile(X, (30, 1))  # 90,000 rows: the codes file is written for a noticeable time
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "x_enc.npy", X_enc)
    fit_args = ["fit", tmp_path / "x.npy", "--method", "rqgmm", "--levels", 2, "--codebook-size", 8,
                "--max-iter", 30, "--seed", 0, "--quiet", "--out"]
    old_model = _fit(X, 1, 4, seed=5)  # distinguishable from the new outputs: one level
    old_model.save(tmp_path / "old-model")
    old_codes = old_model.encode(X_enc)
    write_codes(tmp_path / "old-codes.parquet", CodesTable(old_codes))
    _fit(X, 2, 8, seed=0).save(tmp_path / "enc-model")
    enc_args = ["encode", tmp_path / "enc-model", tmp_path / "x_enc.npy", "--quiet", "--out"]

    # Measure each command once, both at a time as the trials run; these are the reference outputs.
    started = time.monotonic()
    procs = [_cli(*fit_args, tmp_path / "ref-model"), _cli(*enc_args, tmp_path / "ref-codes.parquet")]
    durations = [None, None]
    while None in durations and time.monotonic() - started < 300:
        for i, p in enumerate(procs):
            if durations[i] is None and p.poll() is not None:
                durations[i] = time.monotonic() - started
        time.sleep(0.01)
    for p in procs:
        _finish(p)
    t_fit, t_enc = durations
    ref_model = rqgmm.load(tmp_path / "ref-model", method="rqgmm")
    ref_codes = read_codes(tmp_path / "ref-codes.parquet").codes
    assert ref_codes.shape == (len(X_enc), 2)

    trials = []
    for verb, duration in (("fit", t_fit), ("encode", t_enc)):
        for i, when in enumerate(_kill_plan(rng, duration)):
            overwrite = i % 2 == 1
            d = tmp_path / f"{verb}-{i}"
            d.mkdir()
            if verb == "fit":
                out, args = d / "model", [*fit_args, d / "model"]
                if overwrite:
                    shutil.copytree(tmp_path / "old-model", out)
            else:
                out, args = d / "codes.parquet", [*enc_args, d / "codes.parquet"]
                if overwrite:
                    shutil.copy(tmp_path / "old-codes.parquet", out)
            trials.append((verb, overwrite, when, out, args))
    with ThreadPoolExecutor(max_workers=2) as pool:
        statuses = list(pool.map(lambda t: _run_and_kill(t[4], t[3], t[2]), trials))

    outcome = {"fit": {}, "encode": {}}
    for (verb, overwrite, when, out, _), status in zip(trials, statuses):
        assert status in (0, -signal.SIGKILL), (verb, when, status)
        state = "absent"
        if out.exists():
            if verb == "fit":
                state = "new" if _same_model(out, ref_model) else "old" if _same_model(out, old_model) else "BAD"
                # a complete model also encodes
                assert rqgmm.load(out).encode(X[:10]).shape[0] == 10
            else:
                codes = read_codes(out).codes
                state = ("new" if np.array_equal(codes, ref_codes)
                         else "old" if np.array_equal(codes, old_codes) else "BAD")
        assert state != "BAD", (verb, when, out)
        if overwrite:
            assert state != "absent", f"{verb} killed at {when}: the earlier output is gone"
        else:
            assert state != "old"
        if status == 0:
            assert state == "new"
        key = ("killed" if status else "completed", state, "tmp left" if _leftovers(out) else "clean")
        outcome[verb][key] = outcome[verb].get(key, 0) + 1
    print(f"measured: fit {t_fit:.2f} s, encode {t_enc:.2f} s (two at a time); outcomes: {outcome}")
    for verb in ("fit", "encode"):
        # Timing varies with the machine's load: most, not all, planned kills land before the command ends.
        assert sum(n for k, n in outcome[verb].items() if k[0] == "killed") >= 8, outcome
