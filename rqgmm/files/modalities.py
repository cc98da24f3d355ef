"""Several embedding columns of one item (text, image, ...) as the one vector a tokenizer fits.

The fused vector is each modality L2-normalised, then concatenated, so no
modality outweighs another by its scale or dimension. ``rqgmm evaluate`` and
``rqgmm fit/encode --embedding A --embedding B`` fuse alike, so the IDs a user
deploys are the ones evaluated.
"""

from __future__ import annotations

import numpy as np


def fused(vectors: dict[str, np.ndarray]) -> np.ndarray:
    """Each modality (M, D_c) L2-normalised, then concatenated in the dict's order: (M, Σ D_c) float32."""
    arrays = list(vectors.values())
    out = np.empty((len(arrays[0]), sum(v.shape[1] for v in arrays)), dtype=np.float32)
    start = 0
    for v in arrays:  # written in place: no normalised copy of every modality, no concatenated copy to cast
        out[:, start : start + v.shape[1]] = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        start += v.shape[1]
    return out
