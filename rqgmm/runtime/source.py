"""Where the rows come from: chunks of an in-memory array, a memory-mapped file
or this process's shard of it, behind one face.

EM and k-means only ever call ``chunks()`` (a pass over the rows) and
``take(index)`` (a few rows, for initialisation), so in-memory, out-of-core and
data-parallel fitting share one code path. A sharded source belongs to one rank
of a ``torch.distributed`` group; its statistics are all-reduced by the caller
(:meth:`RowSource.all_reduce`) and its samples gathered across ranks.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist

from rqgmm.errors import InputError
from rqgmm.runtime.parallel import rank_and_size
from rqgmm.runtime.validation import nonfinite_message, nonfinite_rows, as_matrix, as_real_tensor, check_shape


#: Rows per chunk when ``chunk_size`` is None: cache-sized on CPU, few large products on a GPU.
CHUNK_ROWS = {"cpu": 32768, "cuda": 262144}


def chunk_rows(chunk_size: int | None, device: torch.device) -> int:
    """``chunk_size``, or the default rows per chunk for ``device`` when it is None."""
    return chunk_size if chunk_size is not None else CHUNK_ROWS.get(torch.device(device).type, CHUNK_ROWS["cpu"])


#: Share of a GPU's free memory that a shard of rows held resident on it may take.
RESIDENT_SHARE = 0.5
#: Bytes per pinned staging buffer when rows are uploaded to a GPU (two alternate).
STAGING_BYTES = 64 << 20


def fits_on_device(n_rows: int, n_features: int, dtype: torch.dtype, device: torch.device) -> bool:
    """Whether (n_rows, n_features) of ``dtype`` fit in :data:`RESIDENT_SHARE` of a GPU's free memory."""
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return n_rows * n_features * dtype.itemsize <= RESIDENT_SHARE * free


class Stager:
    """Host rows to a GPU through two alternating pinned buffers of :data:`STAGING_BYTES`.

    Filling one buffer from the host (a memory map's pages) overlaps the
    asynchronous copy of the other and the GPU's work on rows already sent.
    Blocks cross in X's stored float dtype and are converted on the GPU.
    Copies and events go on the device's current stream, so work queued
    after :meth:`copy` sees the rows.
    """

    def __init__(self, X, device: torch.device, dtype: torch.dtype) -> None:
        self.stored = stored_float_dtype(X) or dtype  # torch would convert on the host, in one thread
        self.rows = max(1, STAGING_BYTES // max(1, X.shape[1] * self.stored.itemsize))
        self.device = device
        self.buffers = [torch.empty((self.rows, X.shape[1]), dtype=self.stored, pin_memory=True) for _ in range(2)]
        self.done: list[torch.cuda.Event | None] = [None, None]
        self.turn = 0

    def copy(self, X, lo: int, hi: int, out: torch.Tensor, what: str) -> torch.Tensor:
        """Rows X[lo:hi] (a memory map or array) into ``out`` (hi - lo, D) on the GPU, asynchronously; returns out."""
        with torch.cuda.device(self.device):
            for a in range(lo, hi, self.rows):
                b, k = min(a + self.rows, hi), self.turn
                self.turn ^= 1
                if self.done[k] is not None:
                    self.done[k].synchronize()  # the copy that last read this buffer has finished
                staging = self.buffers[k][: b - a]
                if isinstance(X, np.ndarray) and X.dtype.kind in "biuf":  # one copy: file pages -> pinned buffer
                    np.copyto(staging.numpy(), X[a:b], casting="unsafe")
                else:
                    staging.copy_(as_real_tensor(X[a:b], what))
                target = out[a - lo : b - lo]
                if target.dtype == staging.dtype:
                    target.copy_(staging, non_blocking=True)
                else:
                    target.copy_(staging.to(self.device, non_blocking=True))  # converted on the GPU
                self.done[k] = torch.cuda.Event()
                self.done[k].record()
        return out


def upload(X, start: int, stop: int, dtype: torch.dtype, device: torch.device, what: str) -> torch.Tensor:
    """Rows [start, stop) of X (a memory map or array, N x D) copied once to ``device``: (stop - start, D).

    Through a :class:`Stager`, so reading block i + 1 from disk overlaps copying block i.
    """
    out = torch.empty((stop - start, X.shape[1]), dtype=dtype, device=device)
    Stager(X, device, dtype).copy(X, start, stop, out, what)
    torch.cuda.current_stream(device).synchronize()
    return out


def stored_float_dtype(X) -> torch.dtype | None:
    """The torch dtype of a numpy float16/32/64 array's values, else None.

    Rows cross to a GPU in this dtype and are converted there: torch converts a
    host-to-device copy's dtype on the host, in one thread, which made a float16
    file's streaming encode CPU-bound (1.1 GB/s measured for the conversion).
    """
    if isinstance(X, np.ndarray) and X.dtype.kind == "f" and X.dtype.itemsize in (2, 4, 8):
        return torch.from_numpy(np.empty(0, X.dtype.newbyteorder("="))).dtype
    return None


def world() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) without one or inside ``parallel.alone``."""
    return rank_and_size()


def shard_bounds(n_rows: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rows [start, stop) of contiguous block ``rank`` out of ``world_size``."""
    return n_rows * rank // world_size, n_rows * (rank + 1) // world_size


class RowSource:
    """Rows of a 2-D array (numpy, memory map or tensor), served as tensors in chunks.

    Parameters
    ----------
    X : ndarray, np.memmap or Tensor, shape (N, D)
        Numeric. A memory map is read one chunk at a time and never held whole.
    dtype, device :
        Of the tensors served.
    chunk_size : int, optional
        Rows per chunk; None for the device's default (:data:`CHUNK_ROWS`).
    shard : bool
        Serve only this rank's contiguous block of rows when a process group is
        initialised (data-parallel fitting).
    what : str
        Names the input in error messages.
    resident : bool
        Copy this rank's rows to ``device`` once (when it is a GPU and they fit in
        :data:`RESIDENT_SHARE` of its free memory) instead of streaming them on
        every pass; ``resident_`` says whether they were.
    """

    def __init__(self, X, *, dtype: torch.dtype, device: torch.device, chunk_size: int | None, shard: bool = False,
                 what: str = "the input", resident: bool = False) -> None:
        check_shape(tuple(X.shape), what)
        self.what = what
        rank, size = world() if shard else (0, 1)
        self.dtype, self.device = dtype, torch.device(device)
        self.chunk_size = chunk_rows(chunk_size, self.device)
        self.sharded = size > 1
        self.n_total, self.n_features = int(X.shape[0]), int(X.shape[1])
        self.start, stop = shard_bounds(self.n_total, rank, size)
        self.n_local = stop - self.start
        self.resident_ = resident and fits_on_device(self.n_local, self.n_features, dtype, self.device)
        self.X = upload(X, self.start, stop, dtype, self.device, what) if self.resident_ else X
        self.offset = 0 if self.resident_ else self.start  # where this rank's rows begin in self.X
        streams_to_gpu = not self.resident_ and self.device.type == "cuda" and isinstance(X, np.ndarray)
        self._stager = Stager(X, self.device, dtype) if streams_to_gpu else None

    def _tensor(self, rows) -> torch.Tensor:
        if self.resident_:
            return self.X[rows]
        return as_real_tensor(self.X[rows], self.what).to(self.device).to(self.dtype)  # dtype converted on the device

    def chunks(self) -> Iterator[torch.Tensor]:
        """This rank's rows, ``chunk_size`` at a time: tensors (n, D).

        Rows streamed from a host array to a GPU cross through pinned buffers,
        so reading the next chunk overlaps the GPU's work on this one.
        """
        for lo in range(self.offset, self.offset + self.n_local, self.chunk_size):
            hi = min(lo + self.chunk_size, self.offset + self.n_local)
            if self._stager is None:
                yield self._tensor(slice(lo, hi))
            else:
                yield self._stager.copy(self.X, lo, hi, torch.empty((hi - lo, self.n_features), dtype=self.dtype,
                                                                     device=self.device), self.what)

    def take(self, index: np.ndarray) -> torch.Tensor:
        """Rows at local positions ``index`` (sorted): (len(index), D)."""
        rows = self.offset + np.asarray(index, dtype=np.int64)
        return self._tensor(torch.from_numpy(rows).to(self.device) if self.resident_ else rows)

    def validate(self) -> None:
        """One pass: raise InputError naming the rows with NaN or Inf (global row numbers)."""
        bad, offset = [], self.start
        for chunk in self.chunks():
            rows = nonfinite_rows(chunk).cpu().numpy()
            bad.append(rows + offset)
            offset += chunk.shape[0]
        bad_rows = self.gather_numpy(np.concatenate(bad))
        if len(bad_rows):
            raise InputError(nonfinite_message(np.sort(bad_rows), self.n_total, self.what))

    # Every collective runs on tensors on this source's device, so an NCCL-only group works too.

    def all_reduce(self, *tensors: torch.Tensor) -> None:
        """Sum tensors (on this source's device) over the ranks in place (no-op unless sharded)."""
        if self.sharded:
            for t in tensors:
                dist.all_reduce(on_device(t, self.device))

    def gather_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Concatenate each rank's rows (n_r, D), on this source's device, in rank order (identity unless sharded)."""
        if not self.sharded:
            return rows
        rows = on_device(rows, self.device)
        sizes = [torch.zeros((), dtype=torch.int64, device=self.device) for _ in range(world()[1])]
        dist.all_gather(sizes, torch.tensor(rows.shape[0], device=self.device))
        top = int(max(sizes))
        padded = torch.zeros(top, *rows.shape[1:], dtype=rows.dtype, device=self.device)
        padded[: rows.shape[0]] = rows
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        return torch.cat([p[: int(n)] for p, n in zip(parts, sizes)])

    def gather_numpy(self, values: np.ndarray) -> np.ndarray:
        """Concatenate each rank's 1-D int array in rank order (exchanged on this source's device)."""
        if not self.sharded:
            return values
        rows = torch.as_tensor(values, dtype=torch.int64, device=self.device).unsqueeze(1)
        return self.gather_rows(rows).squeeze(1).cpu().numpy()


def _index(device: torch.device) -> int | None:
    if device.type == "cuda" and device.index is None:
        return torch.cuda.current_device()
    return device.index


def on_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` itself when it lies on ``device``; a tensor elsewhere is a bug in the caller (raised, not moved)."""
    if t.device.type != device.type or _index(t.device) != _index(device):
        raise RuntimeError(f"a collective got a tensor on {t.device}, but this group exchanges tensors on {device}")
    return t


def sample_of(X, n_rows: int, seed: int) -> tuple[np.ndarray, dict]:
    """A seeded uniform sample of ``n_rows`` rows of X (N, D; a memory map is read at those rows only).

    Returns the rows (n, D) in file order and a record ``{"rows", "of", "seed"}``
    for the model's config; all rows when N <= ``n_rows``.
    """
    n = int(X.shape[0])
    if n <= n_rows:
        return X, {"rows": n, "of": n, "seed": seed}
    index = np.sort(np.random.default_rng(seed).choice(n, n_rows, replace=False))
    return np.asarray(X[index]), {"rows": n_rows, "of": n, "seed": seed}


def sample_rows(source, max_rows: int, seed: int | None) -> torch.Tensor:
    """A seeded uniform sample of at most ``max_rows`` rows of the whole (all-rank) data, in row order.

    All rows when the data has no more than ``max_rows``; the same rows whatever
    the number of ranks, so data-parallel and single-process fits start alike.
    """
    n = source.n_total
    if source.sharded and seed is None:
        raise InputError("data-parallel fitting needs a fixed random_state (--seed) so every rank starts alike")
    if n <= max_rows:
        index = np.arange(n)
    else:
        index = np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False))
    mine = index[(index >= source.start) & (index < source.start + source.n_local)] - source.start
    return source.gather_rows(source.take(mine))


def as_source(X, *, dtype: torch.dtype, device, chunk_size: int | None, what: str = "X", owner: str = "the model"):
    """``X`` itself if it is already a source, else a validated single-process source over it."""
    if callable(getattr(X, "chunks", None)):  # a RowSource or a tokenizer's ResidualSource over one
        return X
    X = as_matrix(X, dtype=dtype, device=device, what=what, owner=owner)
    return RowSource(X, dtype=dtype, device=X.device, chunk_size=chunk_size)
