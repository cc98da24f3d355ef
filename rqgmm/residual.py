"""Residual quantization over any level type; RQGMM and RQKMeans.

Level l fits a codebook to the residuals r_l (r_1 = the normalised input),
emits the code z_l = level.predict(r_l) (the MAP component for a GMM, the
nearest centre for k-means) and passes r_{l+1} = r_l − c_l[z_l] on.

Inputs are centred and divided by one global scale (the RMS per coordinate)
before the first level, and decoding undoes it. Neither k-means nor a GMM
changes its partition under that map; it keeps float32 well conditioned and
makes ``reg_covar`` relative to the data's scale, so fitting data scaled by
1e-8 or 1e6 gives the same codes.
"""

from __future__ import annotations

import logging
import os
from abc import abstractmethod
from typing import ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from .errors import InputError
from .gmm import DiagonalGMM
from .checkpoint import FitCheckpoint, data_fingerprint
from .kmeans import DEFAULT_CHUNK, KMeans, _disable
from .parallel import is_writer
from .source import ResidualSource, RowSource
from .tokenizer import Tokenizer, like_input, register
from .validation import as_codes, as_matrix, check_positive_int

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def codebook_size_list(codebook_size: int | list[int], levels: int) -> list[int]:
    """One codebook size per level from an int or a list of L ints."""
    sizes = [codebook_size] * levels if isinstance(codebook_size, (int, np.integer)) else list(codebook_size)
    if len(sizes) != levels:
        raise InputError(f"codebook_size lists {len(sizes)} sizes for {levels} levels; give one per level or one int")
    return [check_positive_int("codebook_size", k) for k in sizes]


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
    """Residual quantization with L levels of any codebook type.

    Subclasses choose the level (``_make_level``) and its hyper-parameters.

    Parameters
    ----------
    levels : int
        Number of levels L.
    codebook_size : int or list of int
        K per level.
    random_state : int, optional
        Seed; each level gets its own stream derived from it.
    device : str or torch.device, optional
        Where to fit and encode (default CPU).
    dtype : {"float32", "float64"}
    chunk_size : int
        Rows per block in every pass over the data.
    progress : bool, optional
        tqdm bars over levels and iterations; None = only on a terminal.

    Attributes
    ----------
    levels_ : list of fitted levels
    offset_ : Tensor (D,)   the mean removed before the first level
    scale_ : Tensor ()      the global scale divided out before the first level
    """

    #: Hyper-parameters of the levels, stored in the model file and passed back on load.
    level_params: ClassVar[tuple[str, ...]] = ()
    chunked = True
    resumable = True

    def __init__(
        self,
        levels: int = 3,
        codebook_size: int | list[int] = 256,
        random_state: int | None = None,
        *,
        device: str | torch.device | None = None,
        dtype: str = "float32",
        chunk_size: int = DEFAULT_CHUNK,
        progress: bool | None = None,
    ) -> None:
        self.n_levels = check_positive_int("levels", levels)
        self._codebook_sizes = codebook_size_list(codebook_size, self.n_levels)
        self.random_state = random_state
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        if dtype not in _DTYPES:
            raise InputError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        self.dtype = dtype
        self.chunk_size = check_positive_int("chunk_size", chunk_size)
        self.progress = progress

    @abstractmethod
    def _make_level(self, index: int, n_components: int, seed: int | None):
        """A fresh, unfitted level."""

    def _level_config(self) -> dict:
        """The level hyper-parameters stored in the model file."""
        return {name: getattr(self, name) for name in self.level_params}

    def _level_kwargs(self, index: int, seed: int | None) -> dict:
        """Keyword arguments every level type takes, for level ``index`` (0-based)."""
        return dict(random_state=seed, device=self.device, dtype=_DTYPES[self.dtype], chunk_size=self.chunk_size,
                    progress=self.progress, name=f"level {index + 1}", **self._level_config())

    # ---------------------------------------------------------------- fitting

    @property
    def codebook_sizes(self) -> list[int]:
        return list(self._codebook_sizes)

    def _level_seeds(self) -> list[int | None]:
        if self.random_state is None:
            return [None] * self.n_levels
        states = np.random.SeedSequence(self.random_state).generate_state(self.n_levels)
        return [int(s) for s in states]

    def _as_input(self, X) -> torch.Tensor:
        n_features = self.offset_.shape[0] if hasattr(self, "offset_") else None
        return as_matrix(X, dtype=_DTYPES[self.dtype], device=self.device, n_features=n_features)

    def _source(self, X, shard: bool) -> RowSource:
        """Rows of X in chunks; a memory map stays on disk and is validated in one pass."""
        if isinstance(X, np.memmap):
            source = RowSource(X, dtype=_DTYPES[self.dtype], device=self.device, chunk_size=self.chunk_size, shard=shard)
            if hasattr(self, "offset_") and source.n_features != self.offset_.shape[0]:
                self._as_input(X[:1])  # raises the dimension message
            source.validate()
            return source
        X = self._as_input(X)
        return RowSource(X, dtype=X.dtype, device=X.device, chunk_size=self.chunk_size, shard=shard)

    def fit(self, X, *, checkpoint: str | os.PathLike | None = None) -> "ResidualQuantizer":
        """Fit all levels on X (N, D); returns self.

        X may be an array, a tensor or a ``np.memmap`` (read chunk by chunk, never
        held whole). Inside an initialised ``torch.distributed`` group every rank
        passes the same X, fits on its own block of rows, and all ranks end with
        identical parameters (the statistics are all-reduced).

        With ``checkpoint`` (a directory), progress is saved after every level and
        every few iterations within one; rerunning the same fit resumes from it
        and ends with the model an uninterrupted fit gives.
        """
        for attr in ("offset_", "scale_", "levels_"):
            self.__dict__.pop(attr, None)
        source = self._source(X, shard=True)
        ckpt = self._checkpoint(checkpoint, X)
        self.levels_ = []
        if not self._resume_levels(ckpt):
            self.offset_, self.scale_ = _moments(source)
        codes = torch.zeros(source.n_local, 0, dtype=torch.int64, device=self.device)
        seeds = self._level_seeds()
        for i in tqdm(range(self.n_levels), desc=f"{self.method} levels", disable=_disable(self.progress)):
            residuals = ResidualSource(source, self.offset_, self.scale_, [lv.codebook for lv in self.levels_[:i]], codes)
            if i == len(self.levels_):
                self.levels_.append(self._fit_level(i, seeds[i], residuals, ckpt))
                if ckpt is not None and is_writer():
                    ckpt.save_levels(i + 1, self.state_tensors())
            level = self.levels_[i]
            codes = torch.cat([codes, torch.cat([level.assign_chunk(r) for r in residuals.chunks()]).unsqueeze(1)], 1)
            logger.info("%s level %d: K=%d", self.method, i + 1, level.codebook.shape[0])
        return self

    def _fit_level(self, i: int, seed: int | None, residuals: ResidualSource, ckpt: FitCheckpoint | None):
        level = self._make_level(i, self._codebook_sizes[i], seed)
        if ckpt is None:
            return level.fit(residuals)
        progress = ckpt.load_progress()
        resume = progress if progress is not None and progress[0]["level"] == i else None
        return level.fit(residuals, resume=resume,
                         on_progress=lambda state, t: is_writer() and ckpt.save_progress(i, state, t))

    def _checkpoint(self, path, X) -> FitCheckpoint | None:
        if path is None:
            return None
        fingerprint = {"method": self.method, "levels": self.n_levels, "codebook_size": self.codebook_sizes,
                       "random_state": self.random_state, "dtype": self.dtype, **self._level_config(),
                       "data": data_fingerprint(X)}
        return FitCheckpoint(path, fingerprint)

    def _resume_levels(self, ckpt: FitCheckpoint | None) -> bool:
        """Restore the completed levels of a checkpoint; False when there are none."""
        saved = ckpt.load_levels() if ckpt is not None else None
        if saved is None:
            return False
        state, tensors = saved
        dtype = _DTYPES[self.dtype]
        self.offset_, self.scale_ = tensors["offset"].to(self.device, dtype), tensors["scale"].to(self.device, dtype)
        for i in range(state["n_done"]):
            level_state = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith(f"level{i}.")}
            self.levels_.append(self._make_level(i, self._codebook_sizes[i], None).load_state(level_state))
        logger.info("resuming from %s: %d of %d levels done", ckpt.path, state["n_done"], self.n_levels)
        return True

    def _check_fitted(self) -> None:
        if not hasattr(self, "levels_"):
            raise InputError(f"this {type(self).__name__} is not fitted yet; call fit(X) first")

    # ---------------------------------------------------------------- encoding

    @torch.no_grad()
    def encode(self, X) -> np.ndarray | torch.Tensor:
        """Codes (N, L) int64 of X (N, D); the model is not changed."""
        self._check_fitted()
        source = self._source(X, shard=False)
        codes = torch.cat([self._encode_chunk(chunk) for chunk in source.chunks()])
        return like_input(codes, X)

    def _encode_chunk(self, x: torch.Tensor) -> torch.Tensor:
        """Codes (n, L) of a validated chunk (n, D)."""
        residual = (x - self.offset_) / self.scale_
        codes = []
        for level in self.levels_:
            k = level.assign_chunk(residual)
            residual = residual - level.codebook[k]
            codes.append(k)
        return torch.stack(codes, dim=1)

    @torch.no_grad()
    def decode(self, codes) -> np.ndarray | torch.Tensor:
        """Reconstruction (N, D) from codes (N, l), l <= L: offset + scale · Σ c_l[z_l]."""
        self._check_fitted()
        table = as_codes(codes, levels=self.n_levels, codebook_sizes=self.effective_codebook_sizes).to(self.device)
        out = torch.zeros(table.shape[0], self.offset_.shape[0], dtype=self.offset_.dtype, device=self.device)
        for level, k in zip(self.levels_, table.T):
            out = out + level.codebook[k]
        return like_input(self.offset_ + self.scale_ * out, codes)

    @property
    def n_features_in_(self) -> int:
        """Input dimension D seen in ``fit``."""
        self._check_fitted()
        return int(self.offset_.shape[0])

    @property
    def effective_codebook_sizes(self) -> list[int]:
        """K' actually fitted per level (smaller than K where the data had fewer distinct vectors)."""
        self._check_fitted()
        return [level.codebook.shape[0] for level in self.levels_]

    def truncate(self, levels: int) -> "ResidualQuantizer":
        """A copy of this model cut to its first ``levels`` levels (same codes as their prefix)."""
        self._check_fitted()
        config = {**self.get_config(), "levels": levels, "codebook_size": self._codebook_sizes[:levels]}
        tensors = {k: v for k, v in self.state_tensors().items() if not k.startswith("level") or int(k[5:].split(".")[0]) < levels}
        return type(self).from_state(config, tensors)

    # ---------------------------------------------------------------- model files

    def get_config(self) -> dict:
        self._check_fitted()
        return {
            "levels": self.n_levels,
            "codebook_size": self.codebook_sizes,
            "effective_codebook_size": self.effective_codebook_sizes,
            "n_features": int(self.offset_.shape[0]),
            "random_state": self.random_state,
            "dtype": self.dtype,
            "chunk_size": self.chunk_size,
            **self._level_config(),
        }

    def state_tensors(self) -> dict[str, torch.Tensor]:
        self._check_fitted()
        tensors = {"offset": self.offset_, "scale": self.scale_}
        for i, level in enumerate(self.levels_):
            tensors.update({f"level{i}.{k}": v for k, v in level.state_tensors().items()})
        return tensors

    @classmethod
    def from_state(cls, config: dict, tensors: dict[str, torch.Tensor]) -> "ResidualQuantizer":
        model = cls(
            levels=config["levels"],
            codebook_size=config["codebook_size"],
            random_state=config.get("random_state"),
            dtype=config.get("dtype", "float32"),
            chunk_size=config.get("chunk_size", DEFAULT_CHUNK),
            **{k: v for k, v in config.items() if k in cls.level_params},
        )
        dtype = _DTYPES[model.dtype]
        model.offset_ = tensors["offset"].to(dtype)
        model.scale_ = tensors["scale"].to(dtype)
        if model.offset_.shape != (config["n_features"],):
            raise InputError(f"offset has shape {tuple(model.offset_.shape)}, config says D={config['n_features']}")
        if model.scale_.numel() != 1 or not float(model.scale_) > 0:
            raise InputError(f"tensor 'scale' is {model.scale_.tolist()}; it must be one positive number. Refit the model")
        model.levels_ = []
        for i, K in enumerate(model.codebook_sizes):
            state = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith(f"level{i}.")}
            model.levels_.append(model._make_level(i, K, None).load_state(state))
        stored = config.get("effective_codebook_size")
        if stored is not None and list(stored) != model.effective_codebook_sizes:
            raise InputError(f"the tensors hold {model.effective_codebook_sizes} codewords per level, "
                             f"config.json says {list(stored)}; refit the model")
        return model


@register
class RQGMM(ResidualQuantizer):
    """Residual-quantized Gaussian mixtures (Tong et al., 2026): each level a :class:`DiagonalGMM`.

    Parameters (besides :class:`ResidualQuantizer`'s)
    -------------------------------------------------
    max_iter : int          EM iterations per level at most.
    tol : float             EM stops when the mean log-likelihood changes by less.
    reg_covar : float       added to every variance, relative to the normalised data.
    init_max_iter : int     Lloyd iterations of the k-means initialiser.
    """

    method = "rqgmm"
    level_params = ("max_iter", "tol", "reg_covar", "init_max_iter")

    def __init__(
        self,
        levels: int = 3,
        codebook_size: int | list[int] = 256,
        random_state: int | None = None,
        *,
        max_iter: int = 100,
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        init_max_iter: int = 10,
        **kwargs,
    ) -> None:
        super().__init__(levels, codebook_size, random_state, **kwargs)
        self.max_iter = check_positive_int("max_iter", max_iter)
        self.tol, self.reg_covar = float(tol), float(reg_covar)
        self.init_max_iter = check_positive_int("init_max_iter", init_max_iter)

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
        residual = (self._as_input(X) - self.offset_) / self.scale_
        out = []
        for level in self.levels_:
            out.append(like_input(level.predict_proba(residual), X))
            residual = residual - level.codebook[level.predict(residual)]
        return out


@register
class RQKMeans(ResidualQuantizer):
    """Residual k-means (as in OneRec and QARM): each level a :class:`KMeans`.

    Parameters (besides :class:`ResidualQuantizer`'s)
    -------------------------------------------------
    max_iter : int   Lloyd iterations per level at most.
    tol : float      stop when the inertia falls by less than this fraction.
    """

    method = "rqkmeans"
    level_params = ("max_iter", "tol")

    def __init__(
        self,
        levels: int = 3,
        codebook_size: int | list[int] = 256,
        random_state: int | None = None,
        *,
        max_iter: int = 50,
        tol: float = 1e-4,
        **kwargs,
    ) -> None:
        super().__init__(levels, codebook_size, random_state, **kwargs)
        self.max_iter = check_positive_int("max_iter", max_iter)
        self.tol = float(tol)

    def _make_level(self, index: int, n_components: int, seed: int | None) -> KMeans:
        return KMeans(n_components, **self._level_kwargs(index, seed))
