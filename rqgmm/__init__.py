"""rqgmm: semantic IDs from item embeddings with residual-quantized Gaussian mixtures.

The names below are loaded on first use (PEP 562), so ``import rqgmm.ctr`` or
``import rqgmm.data`` does not pull in the tokenizers.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "DiagonalGMM": "rqgmm.gmm",
    "KMeans": "rqgmm.kmeans",
    "FewDistinctWarning": "rqgmm.level",
    "ResidualQuantizer": "rqgmm.residual",
    "RQGMM": "rqgmm.residual",
    "RQKMeans": "rqgmm.residual",
    "RQVAE": "rqgmm.vae",
    "VQVAE": "rqgmm.vae",
    "PRQKMeans": "rqgmm.prq",
    "Tokenizer": "rqgmm.tokenizer",
    "load": "rqgmm.tokenizer",
    "methods": "rqgmm.tokenizer",
    "InputError": "rqgmm.errors",
    "ConvergenceWarning": "rqgmm.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rqgmm' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return __all__
