"""Resumable fits: a directory holding a fit's progress.

Two files, each written atomically and each carrying the fit's fingerprint in
its safetensors metadata:

- ``levels.safetensors``: the normalisation and every completed level;
- ``progress.safetensors``: the state of the level in progress (its parameters,
  per-iteration history and random-generator state), every few iterations.

Rerunning the same fit with the same directory loads both and continues where
the killed run stopped; because EM and Lloyd are deterministic given that state,
it ends with the model an uninterrupted run gives. A directory written for a
different fit (other data, method or hyper-parameters) is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from rqgmm.errors import InputError
from rqgmm.files.formats import atomic_output

LEVELS_FILE = "levels.safetensors"
PROGRESS_FILE = "progress.safetensors"


def data_fingerprint(X) -> dict:
    """Shape and a hash of the first and last rows: cheap, and catches a different input file."""
    n = X.shape[0]
    rows = lambda block: np.ascontiguousarray(  # noqa: E731
        (block.detach().cpu().numpy() if isinstance(block, torch.Tensor) else np.asarray(block)).astype(np.float64))
    head, tail = rows(X[: min(n, 64)]), rows(X[max(0, n - 64) :])
    digest = hashlib.sha1(head.tobytes() + tail.tobytes()).hexdigest()
    return {"n_rows": int(n), "n_features": int(X.shape[1]), "rows_sha1": digest}


class FitCheckpoint:
    """Read and write one fit's progress under ``path``.

    Parameters
    ----------
    path : directory (created if missing)
    fingerprint : JSON-able dict identifying the fit (config and data)
    """

    def __init__(self, path: str | os.PathLike, fingerprint: dict) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"--checkpoint {self.path} is a file; pass a directory")
        self.path.mkdir(parents=True, exist_ok=True)
        self.fingerprint = json.dumps(fingerprint, sort_keys=True)

    def _read(self, name: str) -> tuple[dict, dict[str, torch.Tensor]] | None:
        file = self.path / name
        if not file.is_file():
            return None
        try:
            with safe_open(str(file), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, ValueError) as exc:
            raise InputError(f"checkpoint file {file} is corrupt ({exc}); remove {self.path} to start over") from None
        if meta.get("fingerprint") != self.fingerprint:
            raise InputError(
                f"checkpoint {self.path} was written for a different fit (other data, method or settings); "
                "pass another --checkpoint directory or remove it"
            )
        return json.loads(meta.get("state", "{}")), tensors

    def _write(self, name: str, state: dict, tensors: dict[str, torch.Tensor]) -> None:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        metadata = {"fingerprint": self.fingerprint, "state": json.dumps(state)}
        with atomic_output(self.path / name) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)

    def load_levels(self) -> tuple[dict, dict[str, torch.Tensor]] | None:
        """(state, tensors) of the completed levels, or None."""
        return self._read(LEVELS_FILE)

    def load_progress(self) -> tuple[dict, dict[str, torch.Tensor]] | None:
        """(state, tensors) of the level in progress, or None."""
        return self._read(PROGRESS_FILE)

    def save_levels(self, n_done: int, tensors: dict[str, torch.Tensor]) -> None:
        """Record ``n_done`` completed levels; the progress of the finished level is dropped."""
        self._write(LEVELS_FILE, {"n_done": n_done}, tensors)
        (self.path / PROGRESS_FILE).unlink(missing_ok=True)

    def save_progress(self, level: int, state: dict, tensors: dict[str, torch.Tensor]) -> None:
        """Record the state of level ``level`` (0-based) in progress."""
        self._write(PROGRESS_FILE, {"level": level, **state}, tensors)
