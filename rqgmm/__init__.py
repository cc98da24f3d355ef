"""rqgmm: semantic IDs from item embeddings with residual-quantized Gaussian mixtures.

The names below are loaded on first use (PEP 562), so ``import rqgmm.ctr`` or
``import rqgmm.data`` does not pull in the tokenizers.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "DiagonalGMM": "rqgmm.tokenizers.gmm",
    "KMeans": "rqgmm.tokenizers.kmeans",
    "FewDistinctWarning": "rqgmm.tokenizers.level",
    "ResidualQuantizer": "rqgmm.tokenizers.residual",
    "RQGMM": "rqgmm.tokenizers.residual",
    "RQKMeans": "rqgmm.tokenizers.residual",
    "RQVAE": "rqgmm.tokenizers.vae",
    "VQVAE": "rqgmm.tokenizers.vae",
    "PRQKMeans": "rqgmm.tokenizers.prq",
    "Tokenizer": "rqgmm.tokenizers.base",
    "load": "rqgmm.tokenizers.base",
    "methods": "rqgmm.tokenizers.base",
    "Store": "rqgmm.store.generations",
    "publish": "rqgmm.store.publish",
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
