"""Every write through one error rule on a real full filesystem: fit, encode and publish exit 2 with one line.

A 1 MiB tmpfs is mounted for each test and filled (all of it, or all but a few pages, so a partial file
could start), then the verb writes into it: the exit is 2, stderr one line naming the cause, and the
filesystem holds only the filler afterwards. Skipped where the test process may not mount a tmpfs
(root or CAP_SYS_ADMIN is needed); test_write_errors injects the writers' own error types instead.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rqgmm import cli

MODEL = Path(__file__).parent / "fixtures" / "previous_release" / "model"
CHUNK = 4096


def _fill(mount: Path, leave: int) -> None:
    """Fill ``mount`` up to ``leave`` free bytes (about: the filesystem's pages)."""
    with open(mount / "filler", "wb", buffering=0) as handle:
        try:
            while handle.write(b"\0" * CHUNK):
                pass
        except OSError:  # ENOSPC: full
            pass
    if leave:
        with open(mount / "filler", "r+b") as handle:
            handle.truncate(max((mount / "filler").stat().st_size - leave, 0))


@pytest.fixture(params=[0, 4 * CHUNK], ids=["full", "nearly-full"])
def small_disk(tmp_path, request):
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a 1 MiB tmpfs here (needs root or CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        _fill(mount, request.param)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def run(capsys, *argv) -> tuple[int, str]:
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err


def _refused_cleanly(code: int, err: str, mount: Path) -> None:
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("rqgmm: error: "), err
    assert "No space left on device" in err or "space" in err.lower(), err
    assert sorted(p.name for p in mount.iterdir()) == ["filler"], list(mount.rglob("*"))


def test_fit_on_a_full_disk(tmp_path, capsys, small_disk):
    x = np.random.default_rng(0).normal(size=(400, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, err = run(capsys, "fit", tmp_path / "x.npy", "--method", "rqkmeans", "--levels", "2", "--codebook-size",
                    "64", "--quiet", "--out", small_disk / "model")
    _refused_cleanly(code, err, small_disk)


def _catalogue(tmp_path: Path, n: int = 3000) -> Path:
    x = np.random.default_rng(0).normal(size=(n, 6)).astype(np.float32)
    pq.write_table(pa.table({"item_id": np.arange(n), "embedding": list(x)}), tmp_path / "cat.parquet")
    return tmp_path / "cat.parquet"


def test_encode_on_a_full_disk(tmp_path, capsys, small_disk):
    code, err = run(capsys, "encode", MODEL, _catalogue(tmp_path), "--out", small_disk / "codes.parquet", "--quiet")
    _refused_cleanly(code, err, small_disk)


def test_publish_on_a_full_disk(tmp_path, capsys, small_disk):
    code, err = run(capsys, "publish", MODEL, _catalogue(tmp_path), "--store", small_disk / "store", "--quiet")
    _refused_cleanly(code, err, small_disk)
