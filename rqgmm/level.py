"""One codebook level fitted by iteration: the loop every level type shares.

KMeans (Lloyd), DiagonalGMM (EM) and PRQ's spherical level differ only in how
they start, what one iteration does and when they stop. The loop -- validate,
start from a seeded sample or resume from a checkpoint, iterate with a progress
bar, record the history, report progress every few iterations, finish -- is
written once here, with the constants, the seeding and the warnings they share.

Seeds are device-independent: every random draw of initialisation and
re-seeding comes from a CPU generator, so one seed gives one start on any device.
"""

from __future__ import annotations

import logging
import warnings
from abc import abstractmethod
from typing import Any, Callable, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator
from tqdm.auto import tqdm

from .device import resolve_device
from .errors import InputError
from .source import as_source, sample_rows
from .validation import check_positive_int

logger = logging.getLogger(__name__)

POINTS_PER_CENTRE = 256  # initialisation sample: at most this many rows per centre (faiss's rule)
DTYPES = {"float32": torch.float32, "float64": torch.float64}


class FewDistinctWarning(UserWarning):
    """A level had fewer distinct vectors than components and shrank its codebook."""


def warn_few_distinct(name: str, requested: int, effective: int) -> None:
    """Warn that a level shrank to ``effective`` components."""
    warnings.warn(
        f"{name}: only {effective} distinct vectors for {requested} components; "
        f"using effective K={effective} (codes stay in [0, {requested}))",
        FewDistinctWarning,
        stacklevel=4,
    )


def check_fitted(estimator, attribute: str) -> None:
    """Raise scikit-learn's NotFittedError unless ``estimator`` has the fitted ``attribute``."""
    if not hasattr(estimator, attribute):
        from sklearn.exceptions import NotFittedError

        raise NotFittedError(f"this {type(estimator).__name__} is not fitted yet; call fit(X) first")


def make_generator(random_state: int | None) -> torch.Generator:
    """A CPU torch generator seeded by ``random_state`` (fresh entropy if None): the same draws on every device."""
    seed = int(np.random.SeedSequence(random_state).generate_state(1)[0])
    return torch.Generator().manual_seed(seed)


def level_seeds(random_state: int | None, n_levels: int) -> list[int | None]:
    """One independent seed per level of a stack, derived from one ``random_state``."""
    if random_state is None:
        return [None] * n_levels
    return [int(s) for s in np.random.SeedSequence(random_state).generate_state(n_levels)]


def progress_disabled(progress: bool | None) -> bool | None:
    """tqdm's ``disable``: None means 'only on a terminal'."""
    return None if progress is None else not progress


def check_dtype(dtype: str) -> torch.dtype:
    """The torch dtype named ``dtype`` ("float32" or "float64")."""
    if dtype not in DTYPES:
        raise InputError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


ProgressCallback = Callable[[dict, dict[str, torch.Tensor]], Any]


class IterativeLevel(BaseEstimator):
    """Base of the level estimators: the shared fit loop.

    Subclasses set ``_verb`` and ``_value_name`` (for the progress bar) and
    implement ``_initialise``, ``_step``, ``_converged``, ``_finish`` and the
    progress-state pair ``_state_tensors`` / ``_restore_tensors``. Constructor
    arguments are stored as given (scikit-learn's rule) and checked in
    ``_check_params`` when ``fit`` starts.

    Attributes set by ``fit``: ``n_features_in_``, ``n_iter_``, ``converged_``,
    ``history_`` (the monitored value per iteration) and ``n_fixed_`` (dead or
    empty components re-seeded after each iteration).
    """

    _verb: ClassVar[str] = "fit"
    _value_name: ClassVar[str] = "value"

    # ------------------------------------------------------------------ hooks

    def _check_params(self) -> None:
        check_positive_int("max_iter", self.max_iter)
        if self.chunk_size is not None:
            check_positive_int("chunk_size", self.chunk_size)
        check_dtype(self.dtype)
        if self.init_sample_size is not None:
            check_positive_int("init_sample_size", self.init_sample_size)
        resolve_device(self.device)

    @property
    @abstractmethod
    def _n_requested(self) -> int:
        """The requested codebook size K."""

    @abstractmethod
    def _initialise(self, sample: torch.Tensor, generator: torch.Generator) -> Any:
        """The starting state from a seeded sample of the rows."""

    @abstractmethod
    def _step(self, source, state: Any, generator: torch.Generator) -> tuple[Any, float, int]:
        """One iteration over all rows: (new state, monitored value, components re-seeded)."""

    @abstractmethod
    def _converged(self) -> bool:
        """Whether the history so far meets the tolerance."""

    @abstractmethod
    def _finish(self, source, state: Any) -> None:
        """Set the fitted attributes from the final state."""

    @abstractmethod
    def _state_tensors(self, state: Any) -> dict[str, torch.Tensor]:
        """The state as named tensors, for a checkpoint."""

    @abstractmethod
    def _restore_tensors(self, tensors: dict[str, torch.Tensor]) -> Any:
        """The state back from ``_state_tensors``."""

    def _extra_progress(self) -> dict:
        """JSON-able scalars a resumed fit needs besides the history."""
        return {}

    def _warm_state(self, previous: "IterativeLevel", sample: torch.Tensor) -> Any:
        """The starting state from a fitted level of the same type (a warm start), on ``sample``'s device."""
        raise InputError(f"{type(self).__name__} cannot start from a fitted level; fit it without init")

    # ------------------------------------------------------------------ the loop

    @property
    def torch_dtype(self) -> torch.dtype:
        """The compute dtype as a torch dtype."""
        return DTYPES[self.dtype]

    def _sample_size(self) -> int:
        return self.init_sample_size or POINTS_PER_CENTRE * self._n_requested

    def fit(self, X, y=None, *, init: "IterativeLevel | None" = None, resume: tuple[dict, dict] | None = None,
            on_progress: ProgressCallback | None = None, progress_every: int = 5):
        """Fit on X (N, D) -- an array, a tensor or a :mod:`rqgmm.source` source; returns self.

        ``y`` is ignored (scikit-learn's signature). ``init`` is a fitted level
        of the same type and dimension (at most ``K`` components): the fit starts
        from its parameters instead of a seeded sample (a warm start; what becomes
        of components that die is the level's choice: k-means refills them, a
        GMM leaves them empty). ``resume`` is a ``(meta, tensors)``
        pair that ``on_progress`` received from an earlier, interrupted fit on
        the same data: the fit continues from it and ends as the uninterrupted
        fit would (it takes precedence over ``init``). ``on_progress(meta,
        tensors)`` is called every ``progress_every`` iterations.
        """
        self._check_params()
        device = resolve_device(self.device) if self.device is not None else None
        source = as_source(X, dtype=self.torch_dtype, device=device, chunk_size=self.chunk_size,
                           what="X", owner=type(self).__name__)
        self.n_features_in_ = source.n_features
        if resume is None:
            generator = make_generator(self.random_state)
            sample = sample_rows(source, self._sample_size(), self.random_state)
            self.history_, self.n_fixed_ = [], []
            self.__dict__.pop("warm_started_", None)
            state = self._initialise(sample, generator) if init is None else self._start_from(init, sample)
        else:
            state, generator = self._restore(*resume, device=source.device)
        self._iterate(source, state, generator, on_progress, progress_every)
        return self

    def _start_from(self, previous: "IterativeLevel", sample: torch.Tensor) -> Any:
        """Check that ``previous`` can start this fit, then take its parameters as the starting state."""
        if type(previous) is not type(self) or not hasattr(previous, "n_features_in_"):
            raise InputError(f"{self.name}: init must be a fitted {type(self).__name__}, got "
                             f"{type(previous).__name__}; pass a level of the same type, fitted")
        k = previous.codebook.shape[0]
        if previous.n_features_in_ != sample.shape[1] or k > self._n_requested:
            raise InputError(f"{self.name}: init has {k} components of dimension {previous.n_features_in_}; this fit "
                             f"needs at most {self._n_requested} of dimension {sample.shape[1]}")
        return self._warm_state(previous, sample)

    def _iterate(self, source, state, generator, on_progress, progress_every) -> None:
        self.converged_ = False
        self.n_iter_ = len(self.history_)
        bar = tqdm(total=self.max_iter, initial=self.n_iter_, desc=f"{self.name} {self._verb}", leave=False,
                   disable=progress_disabled(self.progress))
        for self.n_iter_ in range(self.n_iter_ + 1, self.max_iter + 1):
            state, value, fixed = self._step(source, state, generator)
            self.history_.append(value)
            self.n_fixed_.append(fixed)
            bar.update()
            bar.set_postfix({self._value_name: f"{value:.5g}"})
            if fixed == 0 and self._converged():
                self.converged_ = True
                break
            if on_progress is not None and self.n_iter_ % progress_every == 0:
                meta = {"history": self.history_, "n_fixed": self.n_fixed_, **self._extra_progress()}
                on_progress(meta, {**self._state_tensors(state), "generator": generator.get_state()})
        bar.close()
        self._finish(source, state)

    def _restore(self, meta: dict, tensors: dict, device: torch.device) -> tuple[Any, torch.Generator]:
        self.history_, self.n_fixed_ = list(meta["history"]), list(meta["n_fixed"])
        for key, value in meta.items():
            if key not in ("history", "n_fixed"):
                setattr(self, f"{key}_", value)
        generator = torch.Generator()
        generator.set_state(tensors["generator"].cpu())
        state = self._restore_tensors({k: v.to(device=device, dtype=self.torch_dtype) for k, v in tensors.items()
                                       if k != "generator"})
        return state, generator

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags
