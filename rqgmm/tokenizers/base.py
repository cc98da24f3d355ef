"""The face every tokenizer shares, the method registry, and ``rqgmm.load``.

A tokenizer turns embeddings (N, D) into codes (N, L) int64 and back. Each method
has the name the command line uses (``--method NAME``); a saved model records
that name in ``config.json`` so :func:`load` can rebuild it. The built-in
methods are listed by module path and imported on first use; other code can add
its own with :func:`register`.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin

from rqgmm.runtime.device import resolve_device
from rqgmm.errors import InputError
from rqgmm.files.formats import TENSORS_NAME, read_model, save_model
from rqgmm.runtime.validation import validate_params
from rqgmm.tokenizers.names import BUILTIN_METHODS

_REGISTRY: dict[str, type["Tokenizer"]] = {}


def register(cls: type["Tokenizer"]) -> type["Tokenizer"]:
    """Class decorator: make ``cls`` reachable as ``--method cls.method`` and by :func:`load`."""
    _REGISTRY[cls.method] = cls
    return cls


def methods() -> list[str]:
    """Names of the tokenizer methods, built-in and registered."""
    return sorted(set(BUILTIN_METHODS) | set(_REGISTRY))


def tokenizer_class(method: str) -> type["Tokenizer"]:
    """The tokenizer class named ``method`` (importing its module on first use)."""
    if method not in _REGISTRY and method in BUILTIN_METHODS:
        importlib.import_module(BUILTIN_METHODS[method])
    if method not in _REGISTRY:
        raise InputError(f"unknown method {method!r}; choose one of {', '.join(methods())}")
    return _REGISTRY[method]


#: What ``rqgmm fit`` records about the fit's input in the model's config: the sample it drew
#: (``--sample``: rows, of, seed) and the parquet embedding columns it fused (``--embedding``).
RECORDED = ("fit_sample", "embedding_columns")


def load(path: str | os.PathLike, device: str | torch.device | None = None, method: str | None = None) -> "Tokenizer":
    """Load a tokenizer saved with ``save(path)``.

    Parameters
    ----------
    path : str or PathLike
        The model directory.
    device : str or torch.device, optional
        Where the loaded model computes (default: the CPU); ``tokenizer.to(device)`` moves it later.
    method : str, optional
        The method the caller expects (e.g. ``"rqgmm"``); None accepts any.

    Raises
    ------
    InputError
        If the directory is missing, corrupt or inconsistent, or holds a model of
        another method than ``method``.
    """
    config, tensors = read_model(path)
    if method is not None and config["method"] != method:
        raise InputError(
            f"model in {path} is a {config['method']!r} model, expected {method!r}; "
            f"pass a model fitted with --method {method}, or load it without method="
        )
    target = resolve_device(device) if device is not None else None
    cls = tokenizer_class(config["method"])
    try:
        tokenizer = cls.from_state(config, tensors)
        for key in set(RECORDED) & set(config):
            setattr(tokenizer, f"{key}_", config[key])
        return tokenizer.to(target) if target is not None else tokenizer
    except InputError as exc:
        raise InputError(f"{Path(path) / TENSORS_NAME}: {exc}") from None
    except (KeyError, ValueError, TypeError, IndexError, RuntimeError) as exc:
        raise InputError(f"model in {path} does not match its config ({type(exc).__name__}: {exc}); "
                         "refit the model") from None


class Tokenizer(TransformerMixin, BaseEstimator, ABC):
    """Embeddings (N, D) to semantic IDs (N, L) and back; a scikit-learn transformer.

    Subclasses set ``method``, implement the abstract methods, and are decorated
    with :func:`register`. Constructor arguments are stored as given and checked
    against the class's declared ``_parameter_constraints`` when ``fit`` starts
    (``_check_params``, which the command line also calls before it reads any data). Fitted state lives in tensors (``state_tensors``)
    and JSON-able hyper-parameters (``get_config``), which is all a model file holds.
    Output follows input: numpy in, numpy out; a tensor in, a tensor on its device out.
    """

    method: ClassVar[str]
    #: False where ``decode`` is not a reconstruction of the input (rmse is then reported as null).
    reconstructs: ClassVar[bool] = True
    #: The number of levels the method always has (VQ-VAE: 1), or None when ``levels`` is free.
    fixed_levels: ClassVar[int | None] = None
    #: The constructor argument that ``--max-iter`` sets.
    iteration_param: ClassVar[str] = "max_iter"
    #: Whether the method streams its rows in blocks of ``chunk_size`` (``--chunk-size``).
    chunked: ClassVar[bool] = False
    #: Whether ``fit`` takes ``checkpoint=`` and resumes from it (``--checkpoint``).
    resumable: ClassVar[bool] = False
    #: Whether ``fit`` takes ``init=`` (a warm start) and :func:`rqgmm.refit.align.align` renumbers it.
    refittable: ClassVar[bool] = False
    #: Whether the first l levels of an L-level fit are the l-level fit for the same seed (``truncate(l)`` gives it),
    #: so a sweep over levels fits only the deepest stack.
    nested: ClassVar[bool] = False

    #: Fitted tokenizers have ``n_features_in_``: the input dimension D seen in ``fit``.
    n_features_in_: int

    @abstractmethod
    def fit(self, X, y=None) -> "Tokenizer":
        """Fit on X of shape (N, D); returns self. ``y`` is ignored."""

    #: Constructor argument name -> :class:`~rqgmm.runtime.validation.Constraint` (scikit-learn's declaration).
    _parameter_constraints: ClassVar[dict] = {}

    def _check_params(self) -> None:
        """Raise InputError for a bad constructor argument, before any data is read."""
        validate_params(self)

    def transform(self, X) -> np.ndarray | torch.Tensor:
        """Same as :meth:`encode` (scikit-learn's name)."""
        return self.encode(X)

    @abstractmethod
    def to(self, device: str | torch.device) -> "Tokenizer":
        """Move the fitted model to ``device``; returns self."""

    @abstractmethod
    def encode(self, X) -> np.ndarray | torch.Tensor:
        """Codes of X (N, D): int64 of shape (N, L). Never changes the model."""

    @abstractmethod
    def decode(self, codes) -> np.ndarray | torch.Tensor:
        """Reconstruction (N, D) of codes (N, L) (or of their first l < L levels)."""

    @property
    @abstractmethod
    def codebook_sizes(self) -> list[int]:
        """Nominal codebook size K_l of each level (codes lie in [0, K_l))."""

    @abstractmethod
    def get_config(self) -> dict:
        """JSON-able hyper-parameters and shapes (without ``method``)."""

    @abstractmethod
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Fitted tensors to store in safetensors."""

    @classmethod
    @abstractmethod
    def from_state(cls, config: dict, tensors: dict[str, torch.Tensor]) -> "Tokenizer":
        """Rebuild a fitted tokenizer from ``get_config()`` and ``state_tensors()``."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = []  # codes are int64 whatever the input's dtype
        tags.non_deterministic = getattr(self, "random_state", 0) is None
        return tags

    @property
    def effective_codebook_sizes(self) -> list[int]:
        """Codewords each level really has (codes lie in [0, K'_l)); the nominal sizes unless a method fits fewer."""
        return self.codebook_sizes

    def save(self, path: str | os.PathLike) -> None:
        """Write the model directory ``path`` (config.json + model.safetensors), atomically.

        What the command line recorded about the fit's input (:data:`RECORDED`, as ``NAME_``
        attributes) is kept in the config.
        """
        save_model(path, self.saved_config(), self.state_tensors())

    def saved_config(self) -> dict:
        """The config :meth:`save` writes: ``method``, :meth:`get_config` and the :data:`RECORDED` attributes."""
        recorded = {key: getattr(self, f"{key}_") for key in RECORDED if hasattr(self, f"{key}_")}
        return {"method": self.method, **self.get_config(), **recorded}
