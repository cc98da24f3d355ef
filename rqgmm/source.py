"""Where the rows come from: chunks of an in-memory array, a memory-mapped file
or this process's shard of it, behind one face.

EM and k-means only ever call ``chunks()`` (a pass over the rows) and
``take(index)`` (a few rows, for initialisation), so in-memory, out-of-core and
data-parallel fitting share one code path. A sharded source belongs to one rank
of a ``torch.distributed`` group; its statistics are all-reduced by the caller
(:meth:`RowSource.all_reduce`) and its samples gathered across ranks.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist

from .errors import InputError
from .validation import _nonfinite_message, as_matrix, as_real_tensor, check_shape


def world() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


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
    chunk_size : int
        Rows per chunk.
    shard : bool
        Serve only this rank's contiguous block of rows when a process group is
        initialised (data-parallel fitting).
    what : str
        Names the input in error messages.
    """

    def __init__(self, X, *, dtype: torch.dtype, device: torch.device, chunk_size: int, shard: bool = False,
                 what: str = "the input") -> None:
        check_shape(tuple(X.shape), what)
        self.what = what
        rank, size = world() if shard else (0, 1)
        self.X, self.dtype, self.device, self.chunk_size = X, dtype, torch.device(device), chunk_size
        self.sharded = size > 1
        self.n_total, self.n_features = int(X.shape[0]), int(X.shape[1])
        self.start, stop = shard_bounds(self.n_total, rank, size)
        self.n_local = stop - self.start

    def _tensor(self, rows) -> torch.Tensor:
        return as_real_tensor(self.X[rows], self.what).to(device=self.device, dtype=self.dtype)

    def chunks(self) -> Iterator[torch.Tensor]:
        """This rank's rows, ``chunk_size`` at a time: tensors (n, D)."""
        for offset in range(0, self.n_local, self.chunk_size):
            lo = self.start + offset
            yield self._tensor(slice(lo, min(lo + self.chunk_size, self.start + self.n_local)))

    def take(self, index: np.ndarray) -> torch.Tensor:
        """Rows at local positions ``index`` (sorted): (len(index), D)."""
        return self._tensor(self.start + np.asarray(index, dtype=np.int64))

    def validate(self) -> None:
        """One pass: raise InputError naming the rows with NaN or Inf (global row numbers)."""
        bad, offset = [], self.start
        for chunk in self.chunks():
            rows = torch.nonzero(~torch.isfinite(chunk).all(1)).flatten().cpu().numpy()
            bad.append(rows + offset)
            offset += chunk.shape[0]
        bad_rows = self.gather_numpy(np.concatenate(bad))
        if len(bad_rows):
            raise InputError(_nonfinite_message(np.sort(bad_rows), self.n_total, self.what))

    def all_reduce(self, *tensors: torch.Tensor) -> None:
        """Sum tensors over the ranks in place (no-op unless sharded)."""
        if self.sharded:
            for t in tensors:
                dist.all_reduce(t)

    def gather_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Concatenate each rank's rows (n_r, D) in rank order (identity unless sharded)."""
        if not self.sharded:
            return rows
        sizes = [torch.zeros((), dtype=torch.int64, device=rows.device) for _ in range(world()[1])]
        dist.all_gather(sizes, torch.tensor(rows.shape[0], device=rows.device))
        top = int(max(sizes))
        padded = torch.zeros(top, *rows.shape[1:], dtype=rows.dtype, device=rows.device)
        padded[: rows.shape[0]] = rows
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        return torch.cat([p[: int(n)] for p, n in zip(parts, sizes)])

    def gather_numpy(self, values: np.ndarray) -> np.ndarray:
        """Concatenate each rank's 1-D int array in rank order."""
        if not self.sharded:
            return values
        return self.gather_rows(torch.as_tensor(values, dtype=torch.int64).unsqueeze(1)).squeeze(1).numpy()


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


class ResidualSource:
    """The residuals of a :class:`RowSource`'s rows after the levels fitted so far.

    r_1 = ``normalise(x)``; r_{j+1} = ``next_residual(r_j, codebooks[j][codes[:, j]])``.
    ``codebooks`` (list of (K_j, D)) and ``codes`` ((n_local, j) int64) are the
    levels fitted so far; with none, the residual is the normalised input.
    """

    def __init__(self, base: RowSource, normalise: Callable[[torch.Tensor], torch.Tensor],
                 next_residual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 codebooks: list[torch.Tensor], codes: torch.Tensor) -> None:
        self.base, self.normalise, self.next_residual = base, normalise, next_residual
        self.codebooks, self.codes = codebooks, codes
        for name in ("dtype", "device", "sharded", "n_total", "n_features", "start", "n_local"):
            setattr(self, name, getattr(base, name))

    def _residual(self, x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        r = self.normalise(x)
        for codebook, k in zip(self.codebooks, codes.T):
            r = self.next_residual(r, codebook[k])
        return r

    def chunks(self) -> Iterator[torch.Tensor]:
        offset = 0
        for x in self.base.chunks():
            yield self._residual(x, self.codes[offset : offset + x.shape[0]])
            offset += x.shape[0]

    def take(self, index: np.ndarray) -> torch.Tensor:
        return self._residual(self.base.take(index), self.codes[torch.as_tensor(index, device=self.codes.device)])

    def all_reduce(self, *tensors: torch.Tensor) -> None:
        self.base.all_reduce(*tensors)

    def gather_rows(self, rows: torch.Tensor) -> torch.Tensor:
        return self.base.gather_rows(rows)


def as_source(X, *, dtype: torch.dtype, device, chunk_size: int, what: str = "X", owner: str = "the model"):
    """``X`` itself if it is already a source, else a validated single-process source over it."""
    if isinstance(X, (RowSource, ResidualSource)):
        return X
    X = as_matrix(X, dtype=dtype, device=device, what=what, owner=owner)
    return RowSource(X, dtype=dtype, device=X.device, chunk_size=chunk_size)
