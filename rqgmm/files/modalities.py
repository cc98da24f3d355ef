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
    parts = [v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12) for v in vectors.values()]
    return np.concatenate(parts, axis=1).astype(np.float32)
