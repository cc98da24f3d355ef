"""A full disk during ``fit`` in safetensors' own error type: exit 2, one line naming the cause, nothing partial.

The model write itself is covered in test_sklearn_parity; here the fit's checkpoint, written by the same library.
"""

from __future__ import annotations

import io
from contextlib import redirect_stderr

import numpy as np
from safetensors import SafetensorError

from rqgmm.cli import main


def test_a_full_disk_while_writing_a_checkpoint_is_exit_2_and_leaves_no_partial_file(tmp_path, monkeypatch):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32))

    def full_disk(*args, **kwargs):
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                              'message: "No space left on device" })')

    monkeypatch.setattr("rqgmm.tokenizers.checkpoint.save_file", full_disk)
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(["fit", str(tmp_path / "x.npy"), "--method", "rqkmeans", "--levels", "2", "--codebook-size", "2",
                     "--checkpoint", str(tmp_path / "ckpt"), "--quiet", "--out", str(tmp_path / "model")])
    assert code == 2 and err.getvalue().count("\n") == 1 and "No space left on device" in err.getvalue()
    assert not (tmp_path / "model").exists()
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name or p.suffix == ".safetensors"]
