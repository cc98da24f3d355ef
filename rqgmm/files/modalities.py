"""Several embedding columns of one item (text, image, ...) as the one vector a tokenizer fits.

The fused vector is each modality L2-normalised, then concatenated, so no
modality outweighs another by its scale or dimension. ``rqgmm evaluate`` and
``rqgmm fit/encode --embedding A --embedding B`` fuse alike, so the IDs a user
deploys are the ones evaluated.
"""

from __future__ import annotations

import numpy as np

#: Rows normalised at once: the temporary of one modality is (ROWS, D_c), not (M, D_c).
ROWS = 1 << 16


def fused(vectors: dict[str, np.ndarray], out=None):
    """Each modality (M, D_c) L2-normalised, then concatenated in the dict's order: (M, Σ D_c) float32.

    ``out``: where the result is written, a float32 array or tensor of that shape (a tensor on a GPU: each block
    of ROWS rows crosses once, cast to float32 on the host as numpy's assignment casts, so the values are the
    same and no host copy of the whole is made); default a new numpy array. Returns ``out``.
    """
    arrays = list(vectors.values())
    if out is None:
        out = np.empty((len(arrays[0]), sum(v.shape[1] for v in arrays)), dtype=np.float32)
    start = 0
    for v in arrays:  # written in place, ROWS rows at a time: no normalised copy of a modality, none to cast
        for first in range(0, len(v), ROWS):
            part = v[first : first + ROWS]
            _put(out, (slice(first, first + ROWS), slice(start, start + v.shape[1])),
                 part / np.maximum(np.linalg.norm(part, axis=1, keepdims=True), 1e-12))
        start += v.shape[1]
    return out


def _put(out, block: tuple[slice, slice], values: np.ndarray) -> None:
    """``out[block] = values`` for a numpy array or a torch tensor (the values cast to float32 on the host)."""
    if isinstance(out, np.ndarray):
        out[block] = values
        return
    import torch  # noqa: PLC0415 (a tensor was given: torch is loaded; this module stays importable without it)

    out[block].copy_(torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)))
