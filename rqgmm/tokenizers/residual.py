"""The residual stack: L levels, each fitted on what the levels before it left.

Level l fits a codebook to the residuals r_l (r_1 = the normalised input),
emits the code z_l = level.predict(r_l) (the MAP component for a GMM, the
nearest centre for k-means, the most similar direction for PRQ's spherical
level) and passes r_{l+1} = step(r_l, c_l[z_l]) on. Two hooks make a method:

- ``_fit_normaliser`` / ``_normalise``: how the input becomes r_1;
- ``_next_residual``: the residual rule (subtract; PRQ: project out).

RQGMM and RQKMeans centre the input and divide it by one global scale (the RMS
per coordinate); neither k-means nor a GMM changes its partition under that
map, it keeps float32 well conditioned and makes ``reg_covar`` relative to the
data's scale. Every method on this stack gets chunked, memory-mapped,
data-parallel and resumable fits from the one loop below.
"""

from __future__ import annotations

import logging
import os
from abc import abstractmethod
from typing import ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from rqgmm.tokenizers.balance import BALANCE_CONSTRAINTS
from rqgmm.tokenizers.checkpoint import FitCheckpoint, data_fingerprint
from rqgmm.runtime.device import check_precision, default_device, matmul_precision, resolve_device
from rqgmm.errors import InputError
from rqgmm.tokenizers.gmm import DiagonalGMM
from rqgmm.tokenizers.kmeans import KMeans
from rqgmm.tokenizers.level import COMMON_CONSTRAINTS, DTYPES, check_fitted, progress_disabled
from rqgmm.refit.lineage import check_compatible, fingerprint_of, refit_lineage
from rqgmm.runtime.parallel import is_writer
from rqgmm.runtime.seeding import child_seeds
from rqgmm.runtime.source import RowSource
from rqgmm.tokenizers.walk import ResidualSource
from rqgmm.tokenizers.base import Tokenizer, register
from rqgmm.ids.codes import as_codes
from rqgmm.runtime.validation import Integer, Real, Rule, as_matrix, check_dimension, check_positive_int, like_input
from rqgmm.tokenizers.walk import codeword_sum, residual_walk

logger = logging.getLogger(__name__)


def codebook_size_list(codebook_size: int | list[int], levels: int) -> list[int]:
    """One codebook size per level from an int or a list of L ints."""
    sizes = [codebook_size] * levels if isinstance(codebook_size, (int, np.integer)) else list(codebook_size)
    if len(sizes) != levels:
        raise InputError(f"codebook_size lists {len(sizes)} sizes for {levels} levels; give one per level or one int")
    return [check_positive_int("codebook_size", k) for k in sizes]


def check_codebook_size(codebook_size) -> None:
    """Raise InputError unless ``codebook_size`` is an int >= 1 or a list of them (its length is checked in fit)."""
    try:
        sizes = [codebook_size] if isinstance(codebook_size, (int, np.integer)) else list(codebook_size)
    except TypeError:
        raise InputError(f"codebook_size must be an int or a list of ints, got {codebook_size!r}") from None
    for k in sizes:
        check_positive_int("codebook_size", k)


#: The constraints of every tokenizer with levels and codebooks.
STACK_CONSTRAINTS = {**COMMON_CONSTRAINTS, "levels": Integer(1), "codebook_size": Rule(check_codebook_size)}


def _moments(source: RowSource) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and RMS per coordinate () of the centred rows, in two passes over all ranks' rows."""
    total = torch.zeros(source.n_features, dtype=torch.float64, device=source.device)
    for chunk in source.chunks():
        total += chunk.sum(0, dtype=torch.float64)
    source.all_reduce(total)
    mean = total / source.n_total
    squares = torch.zeros((), dtype=torch.float64, device=source.device)
    for chunk in source.chunks():
        squares += ((chunk.to(torch.float64) - mean) ** 2).sum()
    source.all_reduce(squares)
    rms = (squares / (source.n_total * source.n_features)).sqrt()
    scale = rms if float(rms) > 0 else torch.ones_like(rms)
    return mean.to(source.dtype), scale.to(source.dtype)


class ResidualQuantizer(Tokenizer):
    """Residual quantization with L levels of any iterative level type.

    Subclasses choose the level (``_make_level``), its hyper-parameters
    (``level_params``) and, where they differ from centring and subtraction, the
    normaliser and the residual rule.

    Parameters
    ----------
    levels : int
        Number of levels L.
    codebook_size : int or list of int
        K per level.
    random_state : int, optional
        Seed; each level gets its own stream derived from it. Draws happen on
        the CPU, so a seed gives the same start on every device.
    device : str, optional
        Where to fit and encode (default: where the input is; numpy: the CPU).
    dtype : {"float32", "float64"}
    chunk_size : int, optional
        Rows per block in every pass over the data. Default: 32,768 on CPU,
        262,144 on a GPU (:data:`rqgmm.runtime.source.CHUNK_ROWS`).
    precision : {"fp32", "tf32", "bf16"}
        Precision of the matrix products on a GPU (:func:`rqgmm.runtime.device.matmul_precision`);
        on a CPU every precision computes in fp32. Default fp32.
    progress : bool, optional
        tqdm bars over levels and iterations; None = only on a terminal.

    Attributes
    ----------
    levels_ : list of fitted levels
    n_features_in_ : int
    """

    nested: ClassVar[bool] = True  # each level sees only the residuals of the levels above it
    #: Hyper-parameters of the levels, stored in the model file and passed back on load.
    level_params: ClassVar[tuple[str, ...]] = ()
    #: Names of the normaliser's fitted tensors (attributes ``NAME_``), stored in the model file.
    normaliser_tensors: ClassVar[tuple[str, ...]] = ("offset", "scale")
    chunked = True
    resumable = True
    refittable = True
    _parameter_constraints: ClassVar[dict] = {**STACK_CONSTRAINTS, "precision": Rule(check_precision)}

    def __init__(self, levels: int = 3, codebook_size: int | list[int] = 256, random_state: int | None = None, *,
                 device: str | None = None, dtype: str = "float32", chunk_size: int | None = None,
                 precision: str = "fp32", progress: bool | None = None) -> None:
        self.levels = levels
        self.codebook_size = codebook_size
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.chunk_size = chunk_size
        self.precision = precision
        self.progress = progress

    # ---------------------------------------------------------------- hooks

    @abstractmethod
    def _make_level(self, index: int, n_components: int, seed: int | None):
        """A fresh, unfitted level."""

    def _fit_normaliser(self, source: RowSource) -> None:
        self.offset_, self.scale_ = _moments(source)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.offset_).div_(self.scale_)  # one new (n, D) tensor: x is the caller's

    @staticmethod
    def _next_residual(residual: torch.Tensor, codeword: torch.Tensor) -> torch.Tensor:
        return residual - codeword

    # ---------------------------------------------------------------- parameters

    def _check_params(self) -> None:
        """The declared constraints, and one size per level (also called by the command line before it reads data)."""
        super()._check_params()
        codebook_size_list(self.codebook_size, self.levels)

    @property
    def codebook_sizes(self) -> list[int]:
        return codebook_size_list(self.codebook_size, self.levels)

    @property
    def _torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def _level_kwargs(self, index: int, seed: int | None) -> dict:
        """Keyword arguments every level type takes, for level ``index`` (0-based)."""
        return dict(random_state=seed, dtype=self.dtype, chunk_size=self.chunk_size, progress=self.progress,
                    name=f"level {index + 1}", **{name: getattr(self, name) for name in self.level_params})

    # ---------------------------------------------------------------- fitting

    def _source(self, X, *, shard: bool, device: torch.device) -> RowSource:
        """Rows of X in chunks; a memory map stays on disk and is validated in one pass."""
        n_features = getattr(self, "n_features_in_", None)
        if isinstance(X, np.memmap):
            check_dimension(X, n_features, "X", type(self).__name__)
            # On a GPU with room, the rows cross from the file once instead of on every pass.
            source = RowSource(X, dtype=self._torch_dtype, device=device, chunk_size=self.chunk_size, shard=shard,
                               resident=True, what=str(X.filename or "X"))
            source.validate()
            return source
        X = as_matrix(X, dtype=self._torch_dtype, device=device, n_features=n_features, what="X",
                      owner=type(self).__name__)
        return RowSource(X, dtype=X.dtype, device=X.device, chunk_size=self.chunk_size, shard=shard)

    def fit(self, X, y=None, *, checkpoint: str | os.PathLike | None = None,
            init: "ResidualQuantizer | None" = None) -> "ResidualQuantizer":
        """Fit all levels on X (N, D); returns self. ``y`` is ignored.

        X may be an array, a tensor or a ``np.memmap`` (read chunk by chunk, never
        held whole). Inside an initialised ``torch.distributed`` group every rank
        passes the same X, fits on its own block of rows, and all ranks end with
        identical parameters (the statistics are all-reduced).

        With ``checkpoint`` (a directory), progress is saved after every level and
        every few iterations within one; rerunning the same fit resumes from it
        and ends with the model an uninterrupted fit gives.

        With ``init`` (a fitted model of the same method, levels, codebook sizes
        and dimension) the fit is a warm start: it keeps ``init``'s normaliser
        and starts every level from ``init``'s level, so most items keep their
        IDs; ``lineage_`` (also in the model file) then states the churn of the
        codes of X against ``init``'s (:mod:`rqgmm.refit.lineage`).
        """
        self._check_params()
        for attr in [*(f"{n}_" for n in self.normaliser_tensors), "levels_", "n_features_in_", "lineage_"]:
            self.__dict__.pop(attr, None)
        source = self._source(X, shard=True, device=default_device(X, self.device))
        with matmul_precision(self.precision, source.device):
            return self._fit_levels(source, X, checkpoint, init)

    def _fit_levels(self, source: RowSource, X, checkpoint, init) -> "ResidualQuantizer":
        self.n_features_in_ = source.n_features
        if init is not None:
            check_compatible(self, init, same_method=True, what="init")
        ckpt = self._checkpoint(checkpoint, X, init)
        self.levels_ = []
        if not self._resume_levels(ckpt, source.device):
            self._start_normaliser(source, init)
        codes = torch.zeros(source.n_local, 0, dtype=torch.int64, device=source.device)
        seeds = child_seeds(self.random_state, "levels", self.levels)
        for i in tqdm(range(self.levels), desc=f"{self.method} levels", disable=progress_disabled(self.progress)):
            residuals = ResidualSource(source, self._normalise, self._next_residual,
                                       [lv.codebook for lv in self.levels_[:i]], codes)
            if i == len(self.levels_):
                self.levels_.append(self._fit_level(i, seeds[i], residuals, ckpt, init and init.levels_[i]))
                if ckpt is not None and is_writer():
                    ckpt.save_levels(i + 1, self.state_tensors())
            level = self.levels_[i]
            codes = torch.cat([codes, torch.cat([level.assign_chunk(r) for r in residuals.chunks()]).unsqueeze(1)], 1)
            logger.debug("%s level %d: K=%d", self.method, i + 1, level.codebook.shape[0])
        if init is not None:
            self.lineage_ = lineage = refit_lineage("warm_start", init, self, X)
            logger.info("warm start: full IDs changed on %.2f%% of %d items against the earlier model, "
                        "level-1 codes on %.2f%%", 100 * lineage["full_id_changed"], lineage["n_items"],
                        100 * lineage["code_changed"][0])
        return self

    def _start_normaliser(self, source: RowSource, init: "ResidualQuantizer | None") -> None:
        """Fit the normaliser, or keep ``init``'s so that its codebooks keep their meaning."""
        if init is None:
            return self._fit_normaliser(source)
        for name in self.normaliser_tensors:
            setattr(self, f"{name}_", getattr(init, f"{name}_").to(device=source.device, dtype=self._torch_dtype))

    def _fit_level(self, i: int, seed: int | None, residuals: ResidualSource, ckpt: FitCheckpoint | None,
                   init=None):
        level = self._make_level(i, self.codebook_sizes[i], seed)
        if ckpt is None:
            return level.fit(residuals, init=init)
        progress = ckpt.load_progress()
        resume = progress if progress is not None and progress[0]["level"] == i else None
        return level.fit(residuals, init=init, resume=resume,
                         on_progress=lambda meta, t: is_writer() and ckpt.save_progress(i, meta, t))

    def _checkpoint(self, path, X, init=None) -> FitCheckpoint | None:
        if path is None:
            return None
        fingerprint = {"method": self.method, "levels": self.levels, "codebook_size": self.codebook_sizes,
                       "random_state": self.random_state, "dtype": self.dtype, "checkpoint_version": 3,
                       **{name: getattr(self, name) for name in self.level_params}, "data": data_fingerprint(X),
                       **({"init": fingerprint_of(init)} if init is not None else {})}
        return FitCheckpoint(path, fingerprint)

    def _resume_levels(self, ckpt: FitCheckpoint | None, device: torch.device) -> bool:
        """Restore the normaliser and completed levels of a checkpoint; False when there are none."""
        saved = ckpt.load_levels() if ckpt is not None else None
        if saved is None:
            return False
        state, tensors = saved
        self._load_tensors({k: v.to(device) for k, v in tensors.items()}, n_levels=state["n_done"])
        logger.info("resuming from %s: %d of %d levels done", ckpt.path, state["n_done"], self.levels)
        return True

    def _load_tensors(self, tensors: dict[str, torch.Tensor], n_levels: int) -> None:
        for name in self.normaliser_tensors:
            setattr(self, f"{name}_", tensors[name].to(self._torch_dtype))
        self.levels_ = []
        for i in range(n_levels):
            state = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith(f"level{i}.")}
            self.levels_.append(self._make_level(i, self.codebook_sizes[i], None).load_state(state))

    def _check_fitted(self) -> None:
        check_fitted(self, "levels_")

    # ---------------------------------------------------------------- encoding

    @property
    def _model_device(self) -> torch.device:
        return self.levels_[0].codebook.device

    @property
    def fitted_device(self) -> torch.device:
        """The device the fitted codebooks live on: where encode and decode run."""
        self._check_fitted()
        return self._model_device

    @torch.no_grad()
    def encode(self, X) -> np.ndarray | torch.Tensor:
        """Codes (N, L) int64 of X (N, D); numpy in, numpy out; a tensor in, a tensor on its device out."""
        self._check_fitted()
        source = self._source(X, shard=False, device=self._model_device)
        with matmul_precision(self.precision, source.device):
            codes = torch.cat([self._encode_chunk(chunk) for chunk in source.chunks()])
        return like_input(codes, X)

    def _encode_chunk(self, x: torch.Tensor) -> torch.Tensor:
        """Codes (n, L) of a validated chunk (n, D)."""
        return torch.stack([code for _, _, code in self._walk(x)], dim=1)

    def _walk(self, x: torch.Tensor):
        """The hard residual path of validated rows x (n, D): (level, its residual (n, D), its codes (n,)) per level."""
        walk = residual_walk(self._normalise(x), [level.codebook for level in self.levels_],
                             lambda i, residual: self.levels_[i].assign_chunk(residual), self._next_residual)
        for i, residual, code in walk:
            yield self.levels_[i], residual, code

    def _codes_table(self, codes) -> torch.Tensor:
        self._check_fitted()
        return as_codes(codes, levels=self.levels, codebook_sizes=self.effective_codebook_sizes).to(self._model_device)

    @torch.no_grad()
    def decode(self, codes) -> np.ndarray | torch.Tensor:
        """Reconstruction (N, D) from codes (N, l), l <= L: offset + scale · Σ c_l[z_l]."""
        table = self._codes_table(codes)
        out = codeword_sum([level.codebook for level in self.levels_], table)
        return like_input(self.offset_ + self.scale_ * out, codes)

    def transform(self, X) -> np.ndarray | torch.Tensor:
        """Same as :meth:`encode` (scikit-learn's name)."""
        return self.encode(X)

    def to(self, device) -> "ResidualQuantizer":
        """Move the fitted model to ``device`` (e.g. "cuda"); returns self."""
        device = resolve_device(device)
        self._check_fitted()
        for name in self.normaliser_tensors:
            setattr(self, f"{name}_", getattr(self, f"{name}_").to(device))
        for level in self.levels_:
            level.to(device)
        self.device = str(device)
        return self

    @property
    def effective_codebook_sizes(self) -> list[int]:
        """K' actually fitted per level (smaller than K where the data had fewer distinct vectors)."""
        self._check_fitted()
        return [level.codebook.shape[0] for level in self.levels_]

    @property
    def n_iter_(self) -> int:
        """Iterations run in all, summed over the levels (each level's own: ``levels_[l].n_iter_``).

        Known after ``fit`` only: a model loaded from a file has none.
        """
        self._check_fitted()
        try:
            return int(sum(level.n_iter_ for level in self.levels_))
        except AttributeError:
            raise AttributeError(f"this {type(self).__name__} was loaded from a file; n_iter_ is known only after fit")

    def truncate(self, levels: int) -> "ResidualQuantizer":
        """A copy of this model cut to its first ``levels`` levels (same codes as their prefix)."""
        self._check_fitted()
        config = {**self.get_config(), "levels": levels, "codebook_size": self.codebook_sizes[:levels],
                  "effective_codebook_size": self.effective_codebook_sizes[:levels]}
        tensors = {k: v for k, v in self.state_tensors().items()
                   if not k.startswith("level") or int(k[5:].split(".")[0]) < levels}
        return type(self).from_state(config, tensors)

    # ---------------------------------------------------------------- model files

    def get_config(self) -> dict:
        self._check_fitted()
        return {
            "levels": self.levels,
            "codebook_size": self.codebook_sizes,
            "effective_codebook_size": self.effective_codebook_sizes,
            "n_features": self.n_features_in_,
            "random_state": self.random_state,
            "dtype": self.dtype,
            "chunk_size": self.chunk_size,
            "precision": self.precision,
            **{name: getattr(self, name) for name in self.level_params},
            **({"lineage": self.lineage_} if hasattr(self, "lineage_") else {}),
            "history": [[float(v) for v in getattr(level, "history_", [])] for level in self.levels_],
        }

    def state_tensors(self) -> dict[str, torch.Tensor]:
        self._check_fitted()
        tensors = {name: getattr(self, f"{name}_") for name in self.normaliser_tensors}
        for i, level in enumerate(self.levels_):
            tensors.update({f"level{i}.{k}": v for k, v in level.state_tensors().items()})
        return tensors

    @classmethod
    def from_state(cls, config: dict, tensors: dict[str, torch.Tensor]) -> "ResidualQuantizer":
        model = cls(levels=config["levels"], codebook_size=config["codebook_size"],
                    random_state=config.get("random_state"), dtype=config.get("dtype", "float32"),
                    chunk_size=config.get("chunk_size"), precision=config.get("precision", "fp32"),
                    **{k: v for k, v in config.items() if k in cls.level_params})
        model._check_params()
        model._load_tensors(tensors, n_levels=model.levels)
        model.n_features_in_ = int(config["n_features"])
        if "lineage" in config:
            model.lineage_ = config["lineage"]
        for level, history in zip(model.levels_, config.get("history", [])):
            level.history_ = list(history)  # the fit's per-iteration values, as the fitted model had them
        model._check_loaded(config)
        return model

    def _check_loaded(self, config: dict) -> None:
        """Content checks a loaded model must pass (shapes against the config, a usable normaliser)."""
        for name in self.normaliser_tensors:
            tensor = getattr(self, f"{name}_")
            if tensor.ndim == 1 and tensor.shape != (self.n_features_in_,):
                raise InputError(f"{name} has shape {tuple(tensor.shape)}, config says D={self.n_features_in_}")
        if "scale" in self.normaliser_tensors and (self.scale_.numel() != 1 or not float(self.scale_) > 0):
            raise InputError(f"tensor 'scale' is {self.scale_.tolist()}; it must be one positive number. "
                             "Refit the model")
        if any(level.codebook.shape[1] != self.n_features_in_ for level in self.levels_):
            raise InputError(f"the codebooks' dimension does not match config's D={self.n_features_in_}")
        stored = config.get("effective_codebook_size")
        if stored is not None and list(stored) != self.effective_codebook_sizes:
            raise InputError(f"the tensors hold {self.effective_codebook_sizes} codewords per level, "
                             f"config.json says {list(stored)}; refit the model")


@register
class RQGMM(ResidualQuantizer):
    """Residual-quantized Gaussian mixtures (Tong et al., 2026): each level a :class:`DiagonalGMM`.

    Parameters (besides :class:`ResidualQuantizer`'s)
    -------------------------------------------------
    max_iter : int          EM iterations per level at most.
    tol : float             EM stops when the mean log-likelihood changes by less.
    reg_covar : float       added to every variance, relative to the normalised data.
    init_max_iter : int     Lloyd iterations of the k-means initialiser.
    balance : {None, "greedy", "sinkhorn"}, max_cluster_size : float
        Balanced codes: every level's code is the size-constrained MAP
        assignment (see :class:`~rqgmm.tokenizers.gmm.DiagonalGMM`).
    """

    method = "rqgmm"
    level_params = ("max_iter", "tol", "reg_covar", "init_max_iter", "balance", "max_cluster_size")
    _parameter_constraints = {**ResidualQuantizer._parameter_constraints, **BALANCE_CONSTRAINTS, "max_iter": Integer(1),
                              "tol": Real(0), "reg_covar": Real(0), "init_max_iter": Integer(1)}

    def __init__(self, levels: int = 3, codebook_size: int | list[int] = 256, random_state: int | None = None, *,
                 max_iter: int = 100, tol: float = 1e-3, reg_covar: float = 1e-6, init_max_iter: int = 10,
                 device: str | None = None, dtype: str = "float32", chunk_size: int | None = None,
                 precision: str = "fp32", progress: bool | None = None, balance: str | None = None,
                 max_cluster_size: float = 1.5) -> None:
        super().__init__(levels, codebook_size, random_state, device=device, dtype=dtype, chunk_size=chunk_size,
                         precision=precision, progress=progress)
        self.max_iter = max_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.init_max_iter = init_max_iter
        self.balance = balance
        self.max_cluster_size = max_cluster_size

    def _make_level(self, index: int, n_components: int, seed: int | None) -> DiagonalGMM:
        return DiagonalGMM(n_components, **self._level_kwargs(index, seed))

    @property
    def history_(self) -> list[list[float]]:
        """EM mean log-likelihood per iteration, one list per level."""
        self._check_fitted()
        return [list(getattr(level, "history_", [])) for level in self.levels_]

    @torch.no_grad()
    def predict_proba(self, X) -> list[np.ndarray | torch.Tensor]:
        """Posteriors per level along the hard residual path: a list of L arrays (N, K'_l)."""
        self._check_fitted()
        x = as_matrix(X, dtype=self._torch_dtype, device=self._model_device, n_features=self.n_features_in_,
                      what="X", owner=type(self).__name__)
        with matmul_precision(self.precision, x.device):
            return [like_input(level.predict_proba(residual), X) for level, residual, _ in self._walk(x)]


@register
class RQKMeans(ResidualQuantizer):
    """Residual k-means (as in OneRec and QARM): each level a :class:`KMeans`.

    Parameters (besides :class:`ResidualQuantizer`'s)
    -------------------------------------------------
    max_iter : int   Lloyd iterations per level at most.
    tol : float      stop when the inertia falls by less than this fraction.
    balance : {None, "greedy", "sinkhorn"}, max_cluster_size : float
        Balanced codes: every level is size-constrained k-means (see :class:`~rqgmm.tokenizers.kmeans.KMeans`).
    """

    method = "rqkmeans"
    level_params = ("max_iter", "tol", "balance", "max_cluster_size")
    _parameter_constraints = {**ResidualQuantizer._parameter_constraints, **BALANCE_CONSTRAINTS, "max_iter": Integer(1),
                              "tol": Real(0)}

    def __init__(self, levels: int = 3, codebook_size: int | list[int] = 256, random_state: int | None = None, *,
                 max_iter: int = 50, tol: float = 1e-4, device: str | None = None, dtype: str = "float32",
                 chunk_size: int | None = None, precision: str = "fp32", progress: bool | None = None,
                 balance: str | None = None, max_cluster_size: float = 1.5) -> None:
        super().__init__(levels, codebook_size, random_state, device=device, dtype=dtype, chunk_size=chunk_size,
                         precision=precision, progress=progress)
        self.max_iter = max_iter
        self.tol = tol
        self.balance = balance
        self.max_cluster_size = max_cluster_size

    def _make_level(self, index: int, n_components: int, seed: int | None) -> KMeans:
        return KMeans(n_components, **self._level_kwargs(index, seed))
