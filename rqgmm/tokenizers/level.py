"""One codebook level fitted by iteration: the loop every level type shares.

KMeans (Lloyd), DiagonalGMM (EM) and PRQ's spherical level differ only in how
they start, what one iteration does and when they stop. The loop -- validate,
start from a seeded sample or resume from a checkpoint, iterate with a progress
bar, record the history, report progress every few iterations, finish -- is
written once here, with the constants, the seeding and the warnings they share.

Seeds are device-independent: every random draw of initialisation and
re-seeding comes from a CPU generator, so one seed gives one start on any device.
Each consumer of a level's ``random_state`` (the sample, each start) gets its
own child seed (:mod:`rqgmm.runtime.seeding`).

A level whose sample lies far from the origin (its mean further out than the
data's spread) is fitted in a frame centred on the sample's mean, and its
parameters are returned in the caller's frame with that centre as ``origin_``;
inference subtracts it again. The expanded quadratics of the distances and
log-densities otherwise lose every digit in float32: x² at |x| = 1e4 is 1e8, with
a rounding error of about 8.
"""

from __future__ import annotations

import logging
import warnings
from abc import abstractmethod
from typing import Any, Callable, ClassVar

import torch
from sklearn.base import BaseEstimator
from tqdm.auto import tqdm

from rqgmm.runtime.device import default_device, resolve_device
from rqgmm.errors import InputError
from rqgmm.runtime.seeding import child_seed, child_seeds, cpu_generator
from rqgmm.runtime.source import as_source, sample_rows
from rqgmm.tokenizers.walk import ResidualSource
from rqgmm.runtime.validation import ANY, Integer, Options, Rule, validate_params

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
        stacklevel=5,
    )


def check_fitted(estimator, attribute: str) -> None:
    """Raise scikit-learn's NotFittedError unless ``estimator`` has the fitted ``attribute``."""
    if not hasattr(estimator, attribute):
        from sklearn.exceptions import NotFittedError

        raise NotFittedError(f"this {type(estimator).__name__} is not fitted yet; call fit(X) first")


def far_origin(sample: torch.Tensor) -> torch.Tensor | None:
    """The sample's mean (D,) when it lies further from the origin than the sample's spread, else None.

    ``|mean|² > Σ_d var_d``: beyond that, the expanded quadratics start to lose
    digits; below it (centred data, residuals) no shift is made, so a level of
    a tokenizer costs nothing more.
    """
    x = sample.to(torch.float64)
    mean = x.mean(0)
    spread = float(x.var(0, unbiased=False).sum())
    return mean.to(sample.dtype) if float(mean @ mean) > spread else None


def progress_disabled(progress: bool | None) -> bool | None:
    """tqdm's ``disable``: None means 'only on a terminal'."""
    return None if progress is None else not progress


#: The constraints every level and tokenizer shares (:func:`rqgmm.runtime.validation.validate_params`).
COMMON_CONSTRAINTS = {
    "random_state": Integer(0, optional=True),
    "device": Rule(lambda value: resolve_device(value)),
    "dtype": Options(tuple(DTYPES)),
    "chunk_size": Integer(1, optional=True),
    "progress": ANY,
}


ProgressCallback = Callable[[dict, dict[str, torch.Tensor]], Any]


class IterativeLevel(BaseEstimator):
    """Base of the level estimators: the shared fit loop.

    Subclasses set ``_verb`` and ``_value_name`` (for the progress bar) and
    implement ``_initialise``, ``_step``, ``_converged``, ``_finish``, the
    progress-state pair ``_state_tensors`` / ``_restore_tensors`` and the frame
    pair ``_shift_state`` / ``_shift_fitted``, and declare their arguments in
    ``_parameter_constraints``. Constructor arguments are stored as given
    (scikit-learn's rule) and checked against that declaration when ``fit`` starts.

    Attributes set by ``fit``: ``n_features_in_``, ``n_iter_``, ``converged_``,
    ``history_`` (the monitored value per iteration), ``n_fixed_`` (dead or
    empty components re-seeded after each iteration) and ``origin_`` (the
    centre of the fitting frame, or None when the data needed none).
    """

    _verb: ClassVar[str] = "fit"
    _value_name: ClassVar[str] = "value"
    #: Whether the level may fit in a frame centred on its data (not for directions on the unit sphere).
    _centres_far_data: ClassVar[bool] = True
    #: Candidates per step of greedy k-means++ (None: scikit-learn's 2 + floor(ln K); 1: plain k-means++).
    #: Not a constructor argument: a benchmark sets it on an instance to compare the two seedings.
    _seeding_trials: int | None = None
    _parameter_constraints: ClassVar[dict] = {
        **COMMON_CONSTRAINTS, "max_iter": Integer(1), "init_sample_size": Integer(1, optional=True), "name": ANY,
    }

    # ------------------------------------------------------------------ hooks

    def _check_params(self) -> None:
        validate_params(self)

    @property
    @abstractmethod
    def _n_requested(self) -> int:
        """The requested codebook size K."""

    @abstractmethod
    def _initialise(self, sample: torch.Tensor, generator: torch.Generator, seed: int | None) -> Any:
        """The starting state from a seeded sample of the rows; ``seed`` is this start's own child seed."""

    @abstractmethod
    def _step(self, source, state: Any, generator: torch.Generator) -> tuple[Any, float, int]:
        """One iteration over all rows: (new state, monitored value, components re-seeded)."""

    @abstractmethod
    def _converged(self, previous: float | None, current: float) -> bool:
        """Whether the monitored value ``current`` meets the tolerance against the one before it (None: none yet)."""

    @abstractmethod
    def _finish(self, source, state: Any) -> None:
        """Set the fitted attributes from the final state."""

    @abstractmethod
    def _state_tensors(self, state: Any) -> dict[str, torch.Tensor]:
        """The state as named tensors, for a checkpoint."""

    @abstractmethod
    def _restore_tensors(self, tensors: dict[str, torch.Tensor]) -> Any:
        """The state back from ``_state_tensors``."""

    def _objective(self) -> float:
        """The fitted start's score for ``n_init`` (higher is better)."""
        return -self.history_[-1]

    def _warm_value(self, previous: "IterativeLevel") -> float | None:
        """The monitored value ``previous`` ended with: a warm start's first iteration is compared with it."""
        return None

    def _shift_state(self, state: Any, delta: torch.Tensor) -> Any:
        """The state translated by ``delta`` (D,) (for the levels that centre far data)."""
        raise NotImplementedError

    def _shift_fitted(self, delta: torch.Tensor) -> None:
        """Translate the fitted location parameters by ``delta`` (D,), in place."""
        raise NotImplementedError

    def _after_fit(self) -> None:
        """Warnings about the chosen start (e.g. that it did not converge)."""

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
        """Fit on X (N, D) -- an array, a tensor or a :mod:`rqgmm.runtime.source` source; returns self.

        ``y`` is ignored (scikit-learn's signature). With ``n_init`` > 1 the fit
        runs that many seeded starts and keeps the best (scikit-learn's
        meaning). ``init`` is a fitted level of the same type and dimension (at
        most ``K`` components): the fit starts from its parameters instead of a
        seeded sample -- a warm start, as scikit-learn's ``warm_start``: one
        start, and its first iteration's value is compared with the one
        ``init`` ended with, so repeated short warm fits report convergence.
        What becomes of components that die is the level's choice. ``resume``
        is a ``(meta, tensors)`` pair that ``on_progress`` received from an
        earlier, interrupted fit on the same data: the fit continues from it and
        ends as the uninterrupted fit would (it takes precedence over ``init``).
        ``on_progress(meta, tensors)`` is called every ``progress_every``
        iterations (with ``n_init`` = 1 only).
        """
        self._check_params()
        runs = 1 if init is not None or resume is not None else int(getattr(self, "n_init", 1))
        if runs > 1 and on_progress is not None:
            raise InputError(f"{self.name}: a checkpointed fit takes one start; use n_init=1 with on_progress")
        source = as_source(X, dtype=self.torch_dtype, device=default_device(X, self.device),
                           chunk_size=self.chunk_size, what="X", owner=type(self).__name__)
        self.n_features_in_ = source.n_features
        sample = sample_rows(source, self._sample_size(), child_seed(self.random_state, "sample"))
        origin = far_origin(sample) if self._centres_far_data else None
        if origin is not None:
            source = ResidualSource(source, lambda x: x - origin, None, [], torch.zeros(source.n_local, 0,
                                    dtype=torch.int64, device=source.device))
            sample = sample - origin
        self.origin_ = origin
        if resume is not None:
            state, generator = self._restore(*resume, device=source.device)
            self._iterate(source, state, generator, on_progress, progress_every)
        else:
            self._best_of_starts(source, sample, init, origin, runs, on_progress, progress_every)
        if origin is not None:
            self._shift_fitted(origin)
        self._after_fit()
        return self

    def _best_of_starts(self, source, sample, init, origin, runs, on_progress, progress_every) -> None:
        """Run ``runs`` seeded starts (or the one warm start) and keep the fitted attributes of the best."""
        best: tuple[float, dict] | None = None
        for seed in child_seeds(self.random_state, "start", runs):
            generator = cpu_generator(seed)
            self.history_, self.n_fixed_ = [], []
            self.__dict__.pop("warm_started_", None)
            if init is None:
                self._warm_value_ = None
                state = self._initialise(sample, generator, seed)
            else:
                state = self._start_from(init, sample)
                self._warm_value_ = self._warm_value(init)
                if origin is not None:
                    state = self._shift_state(state, -origin)
            self._iterate(source, state, generator, on_progress, progress_every)
            if runs > 1 and (best is None or self._objective() > best[0]):
                best = (self._objective(), {k: v for k, v in vars(self).items() if k.endswith("_")})
        if runs > 1:
            self.__dict__.update(best[1])

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
            previous = self.history_[-2] if len(self.history_) > 1 else getattr(self, "_warm_value_", None)
            if fixed == 0 and self._converged(previous, value):
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

    def _frame(self, x: torch.Tensor) -> torch.Tensor:
        """Rows x (n, D) in the fitting frame: x - ``origin_`` when the level has one, else x itself."""
        origin = getattr(self, "origin_", None)
        return x if origin is None else x - origin

    def _origin_tensors(self) -> dict[str, torch.Tensor]:
        """``{"origin": origin_}`` for a model file when the level has an origin, else nothing."""
        origin = getattr(self, "origin_", None)
        return {} if origin is None else {"origin": origin}

    def _load_origin(self, tensors: dict[str, torch.Tensor]) -> None:
        origin = tensors.get("origin")
        if origin is not None and origin.shape != (self.n_features_in_,):
            raise InputError(f"{self.name}: stored origin has shape {tuple(origin.shape)}, expected "
                             f"({self.n_features_in_},); refit the model")
        self.origin_ = None if origin is None else origin.to(self.torch_dtype)

    def _move_origin(self, device) -> None:
        if getattr(self, "origin_", None) is not None:
            self.origin_ = self.origin_.to(device)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags
