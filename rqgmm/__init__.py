"""rqgmm: semantic IDs from item embeddings with residual-quantized Gaussian mixtures."""

from .errors import InputError
from .gmm import DiagonalGMM
from .kmeans import FewDistinctWarning, KMeans
from .residual import RQGMM, ResidualQuantizer, RQKMeans
from .tokenizer import Tokenizer, load, methods

__version__ = "0.1.0"

__all__ = [
    "DiagonalGMM", "FewDistinctWarning", "InputError", "KMeans", "RQGMM", "RQKMeans",
    "ResidualQuantizer", "Tokenizer", "load", "methods", "__version__",
]
