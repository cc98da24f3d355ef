"""DiagonalGMM: one codebook level, a diagonal Gaussian mixture fitted by EM.

Pure tensor functions first (log-density, E-step, M-step, initialisation), then
the estimator. The E-step works in log space (log-sum-exp); the diagonal
log-density is an expanded quadratic done as two matrix products; the M-step
reads float64 sufficient statistics (:mod:`rqgmm.tokenizers.stats`). Names and fitted
attributes follow ``sklearn.mixture.GaussianMixture(covariance_type="diag")``,
which serves as the test oracle.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from rqgmm.tokenizers.balance import BALANCE_CONSTRAINTS, balanced_assign
from rqgmm.errors import ConvergenceWarning, InputError
from rqgmm.tokenizers.kmeans import KMeans
from rqgmm.tokenizers.level import IterativeLevel, check_fitted
from rqgmm.runtime.seeding import child_seed
from rqgmm.runtime.source import chunk_rows
from rqgmm.tokenizers.stats import GMMStats
from rqgmm.runtime.validation import ANY, Integer, Real, as_matrix, like_input

logger = logging.getLogger(__name__)

LOG_2PI = math.log(2.0 * math.pi)


@dataclass
class GMMParams:
    """Mixture parameters: weights (K,), means (K, D), variances (K, D)."""

    weights: torch.Tensor
    means: torch.Tensor
    variances: torch.Tensor


def log_gaussian_prob(X: torch.Tensor, means: torch.Tensor, variances: torch.Tensor,
                      X2: torch.Tensor | None = None, log_weights: torch.Tensor | None = None) -> torch.Tensor:
    """log N(x | μ_k, diag σ²_k) (+ log π_k when ``log_weights`` is given) for X (n, D): (n, K).

    Expanded as -½ [D log 2π + Σ log σ² + x² · (1/σ²) − 2 x · (μ/σ²) + Σ μ²/σ²]:
    two (n, D) × (D, K) products accumulated into one (n, K) result with the
    constant as its bias, so no (n, K) temporary is made. ``X2`` is X * X when
    the caller already has it.
    """
    prec = 1.0 / variances
    bias = -0.5 * (X.shape[1] * LOG_2PI + torch.log(variances).sum(1) + (means * means * prec).sum(1))
    if log_weights is not None:
        bias = bias + log_weights
    X2 = X * X if X2 is None else X2
    out = torch.addmm(bias, X2, prec.T, alpha=-0.5)
    if out.dtype != X.dtype:  # products under bfloat16 autocast: no in-place mix of dtypes
        return (out + X @ (means * prec).T).to(X.dtype)
    return out.addmm_(X, (means * prec).T)


def weighted_log_prob(X: torch.Tensor, params: GMMParams, X2: torch.Tensor | None = None) -> torch.Tensor:
    """log π_k + log N(x | μ_k, σ²_k): (n, K)."""
    return log_gaussian_prob(X, params.means, params.variances, X2, torch.log(params.weights))


def e_step(X: torch.Tensor, params: GMMParams, X2: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Responsibilities γ (n, K) and log p(x) (n,) for a chunk X (n, D)."""
    return posteriors(weighted_log_prob(X, params, X2))


def posteriors(wlp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """γ = softmax(w) (n, K) and log p = logsumexp(w) (n,) of weighted log-probabilities w (n, K).

    Two formulations of the same quantities, each the faster on its device:
    on a CPU, :func:`flushed_posteriors`; elsewhere, :func:`softmax_posteriors`.
    """
    return flushed_posteriors(wlp) if wlp.device.type == "cpu" else softmax_posteriors(wlp)


def flushed_posteriors(wlp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The CPU's E-step normalisation, in place of ``wlp``.

    γ = exp(w − max w) / Σ exp(w − max w) and log p = max w + log Σ exp(w − max w)
    (log-sum-exp written out so the exponentials are taken once). Terms whose
    γ would fall below the dtype's smallest normal number are set to 0 before
    the exponential: subnormal values make exp() and the M-step's products
    several times slower on CPUs (seen: 7x with 3.5% of them), and they are far
    below anything the statistics can resolve.
    """
    top = wlp.max(dim=1, keepdim=True).values
    shifted = wlp.sub_(top)
    floor = math.log(torch.finfo(shifted.dtype).tiny) + math.log(shifted.shape[1]) + 1.0  # γ >= e · tiny
    unnormalised = shifted.masked_fill_(shifted < floor, -math.inf).exp_()
    total = unnormalised.sum(dim=1, keepdim=True)
    return unnormalised.div_(total), (top + total.log()).squeeze(1)


def softmax_posteriors(wlp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The GPU's E-step normalisation: one fused softmax, and log p = max w − log max γ.

    γ at a row's largest w is 1 / Σ exp(w − max w) >= 1/K, so its logarithm
    recovers the log-sum-exp to the dtype's precision. Three reads and one
    write of the (n, K) matrix instead of :func:`flushed_posteriors`' dozen
    (subnormal numbers cost a GPU nothing).
    """
    top = wlp.amax(dim=1)
    resp = torch.softmax(wlp, dim=1)
    return resp, top - resp.amax(dim=1).log()


def m_step(stats: GMMStats, reg_covar: float, var_floor: float, dtype: torch.dtype) -> GMMParams:
    """Parameters from the summed statistics.

    Component counts get a floor of 10·eps (as scikit-learn does); variances get
    ``reg_covar`` added and are clamped at ``var_floor``.
    """
    nk = stats.nk + 10 * torch.finfo(dtype).eps
    means = stats.sx / nk.unsqueeze(1)
    variances = stats.sxx / nk.unsqueeze(1) - means * means + reg_covar
    variances = variances.clamp_min(var_floor)
    weights = nk / nk.sum()
    return GMMParams(weights.to(dtype), means.to(dtype), variances.to(dtype))


def check_finite_params(params: GMMParams, name: str) -> None:
    """Raise InputError unless every weight, mean and variance is finite and every variance positive.

    One reduction and one read-back: called once per EM iteration, never per chunk.
    """
    ok = torch.isfinite(params.means).all() & torch.isfinite(params.weights).all() & (params.variances > 0).all()
    if not bool(ok & torch.isfinite(params.variances).all()):
        raise InputError(
            f"{name}: fitting the mixture model failed because some components have ill-defined empirical "
            "covariance (for instance caused by singleton or collapsed samples). Try to decrease the number of "
            "components, increase reg_covar or variance_floor, or scale the input data"
        )


def accumulate(source, params: GMMParams) -> GMMStats:
    """One E-step over a source's chunks, returning the statistics summed over chunks and ranks."""
    stats = GMMStats.zeros(params.means.shape[0], params.means.shape[1], params.means.device)
    for chunk in source.chunks():
        X2 = chunk * chunk  # once per chunk: the E-step's product and the M-step's Σγx² share it
        resp, log_norm = e_step(chunk, params, X2)
        stats.update(chunk, X2, resp, log_norm)
    source.all_reduce(*stats.tensors())
    return stats


def stats_from_labels(X: torch.Tensor, labels: torch.Tensor, n_components: int, chunk_size: int) -> GMMStats:
    """Statistics of a hard assignment (one-hot responsibilities), for initialisation."""
    stats = GMMStats.zeros(n_components, X.shape[1], X.device)
    for start in range(0, X.shape[0], chunk_size):
        chunk = X[start : start + chunk_size]
        resp = torch.nn.functional.one_hot(labels[start : start + chunk_size], n_components).to(X.dtype)
        stats.update(chunk, chunk * chunk, resp, torch.zeros(chunk.shape[0], dtype=X.dtype, device=X.device))
    return stats


def random_signs(shape: torch.Size, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """±1 of ``shape`` drawn on the CPU generator, in ``like``'s dtype and device."""
    return (torch.randint(0, 2, tuple(shape), generator=generator) * 2 - 1).to(device=like.device, dtype=like.dtype)


def split_dead(params: GMMParams, nk: torch.Tensor, min_count: float, generator: torch.Generator) -> int:
    """Re-seed components holding fewer than ``min_count`` samples, in place.

    Each dead component takes the place of half of the currently heaviest one:
    the two means move apart by ±½σ along random signs, they share its weight,
    and both keep its variances. Returns the number re-seeded.
    """
    dead = torch.nonzero(nk < min_count).flatten().tolist()
    nk = nk.clone()
    for j in dead:
        h = int(torch.argmax(nk))
        if nk[h] < 2 * min_count:
            break
        delta = 0.5 * params.variances[h].sqrt() * random_signs(params.means[h].shape, generator, params.means)
        params.means[j], params.means[h] = params.means[h] + delta, params.means[h] - delta
        params.variances[j] = params.variances[h]
        params.weights[h] = params.weights[j] = (params.weights[h] + params.weights[j]) / 2
        nk[j] = nk[h] = nk[h] / 2
    return len(dead)


class DiagonalGMM(IterativeLevel):
    """A Gaussian mixture with diagonal covariances, fitted by EM, on CPU or GPU.

    ``sklearn.mixture.GaussianMixture(covariance_type="diag")`` is the oracle;
    the documented differences are: the ``variance_floor`` (relative to the
    data's variance; 0 turns it off); dead components re-seeded by splitting
    the heaviest one (``min_component_count``; off in a warm start); K shrinking
    to the number of distinct rows (``n_components_``) with a warning where
    scikit-learn raises; and, with ``means_init`` given, no k-means run: missing
    weights start uniform and missing precisions at the data's variance (without
    ``means_init``, missing initial parameters come from the k-means start, as
    in scikit-learn). A fit that would produce a non-finite parameter raises
    :class:`~rqgmm.errors.InputError` instead.

    Parameters
    ----------
    n_components : int
        K. With fewer distinct input rows, the level shrinks to that number
        (``n_components_``) with a warning that names the effective K.
    tol : float
        Stop when the mean log-likelihood changes by less than ``tol``.
    reg_covar : float
        Added to every variance (as in scikit-learn).
    variance_floor : float
        Variances are also clamped at ``variance_floor`` × the mean per-dimension
        variance of the data, so the floor follows the data's scale.
    max_iter : int
        Maximum EM iterations.
    init_max_iter : int
        Lloyd iterations of the k-means initialiser (k-means++ seeding).
    min_component_count : float
        A component whose Σγ falls below this is re-seeded by splitting the
        heaviest one (0 turns re-seeding off).
    n_init : int
        Starts (each its own k-means initialisation); the one with the highest
        lower bound is kept (scikit-learn's meaning).
    random_state : int, optional
    means_init, weights_init, precisions_init : array-like, optional
        Initial parameters (K, D), (K,) (in [0, 1], summing to 1), (K, D)
        (positive) as in scikit-learn, each honoured on its own; checked
        with scikit-learn's messages.
    device : str, optional
        Where to compute (default: where the input is; numpy input: the CPU).
    dtype : {"float32", "float64"}
    chunk_size : int, optional
        Rows per E-step block; the (N, K) responsibility matrix is never held whole.
        Default: 32,768 on CPU, 262,144 on a GPU (:data:`rqgmm.runtime.source.CHUNK_ROWS`).
    init_sample_size : int, optional
        The k-means initialiser and the variance floor use a seeded uniform
        sample of at most this many rows (default 256·K; all rows when fewer).
    progress : bool, optional
        tqdm bar over EM iterations; None = only on a terminal.
    name : str
        Names the level in warnings and progress bars.
    balance : {None, "greedy", "sinkhorn"}
        None: the code is the MAP component. Otherwise EM fits the mixture as
        usual and the code is the size-constrained MAP assignment (cost
        −log π_k N(x | k)): no component takes more than
        ``ceil(max_cluster_size · n / K')`` of each block of n rows (:mod:`rqgmm.tokenizers.balance`).
    max_cluster_size : float >= 1
        The size bound as a multiple of the mean component size (used with ``balance``).

    Attributes
    ----------
    weights_ (K',), means_ (K', D), variances_ (K', D) : Tensor
    n_components_ : int       effective K'
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float      mean log-likelihood at the last E-step of the fit
    history_ : list[float]    mean log-likelihood at each iteration's E-step
    n_reseeded_ : list[int]   components re-seeded after each iteration's M-step
    var_floor_ : float        the absolute variance floor used
    origin_ : Tensor (D,) or None  centre of the fitting frame (data far from the origin), see :mod:`rqgmm.tokenizers.level`
    n_features_in_ : int
    """

    _verb = "EM"
    _value_name = "loglik"
    _parameter_constraints = {
        **IterativeLevel._parameter_constraints, **BALANCE_CONSTRAINTS, "n_components": Integer(1), "tol": Real(0),
        "reg_covar": Real(0), "variance_floor": Real(0), "init_max_iter": Integer(1), "min_component_count": Real(0),
        "n_init": Integer(1), "means_init": ANY, "weights_init": ANY, "precisions_init": ANY,  # checked against X
    }

    def __init__(
        self,
        n_components: int = 256,
        *,
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        variance_floor: float = 1e-6,
        max_iter: int = 100,
        init_max_iter: int = 10,
        min_component_count: float = 1.0,
        n_init: int = 1,
        random_state: int | None = None,
        means_init=None,
        weights_init=None,
        precisions_init=None,
        device: str | None = None,
        dtype: str = "float32",
        chunk_size: int | None = None,
        init_sample_size: int | None = None,
        progress: bool | None = None,
        name: str = "gmm",
        balance: str | None = None,
        max_cluster_size: float = 1.5,
    ) -> None:
        self.n_components = n_components
        self.tol = tol
        self.reg_covar = reg_covar
        self.variance_floor = variance_floor
        self.max_iter = max_iter
        self.init_max_iter = init_max_iter
        self.min_component_count = min_component_count
        self.n_init = n_init
        self.random_state = random_state
        self.means_init, self.weights_init, self.precisions_init = means_init, weights_init, precisions_init
        self.device = device
        self.dtype = dtype
        self.chunk_size = chunk_size
        self.init_sample_size = init_sample_size
        self.progress = progress
        self.name = name
        self.balance = balance
        self.max_cluster_size = max_cluster_size

    @property
    def _n_requested(self) -> int:
        return self.n_components

    # ------------------------------------------------------------------ the loop's hooks

    def _initialise(self, sample: torch.Tensor, generator: torch.Generator, seed: int | None) -> GMMParams:
        """Parameters from the user's initial values, completed by k-means on the sample (its own child seed)."""
        self._set_var_floor(sample)
        given = self._given_params(sample.shape[1], sample.device)
        if given.means is not None:
            params = self._complete_given(given, sample)
        else:
            km = KMeans(self.n_components, max_iter=self.init_max_iter, random_state=child_seed(seed, "kmeans"),
                        dtype=self.dtype, chunk_size=self.chunk_size, progress=False, name=self.name)
            km._seeding_trials = self._seeding_trials
            km.fit(sample)
            self.n_components_ = km.n_clusters_
            labels = km.predict(sample)
            stats = stats_from_labels(sample, labels, self.n_components_, chunk_rows(self.chunk_size, sample.device))
            params = m_step(stats, float(self.reg_covar), self.var_floor_, self.torch_dtype)
            if self.n_components_ == self.n_components:  # a shrunk start cannot take K-sized initial values
                params.weights = given.weights if given.weights is not None else params.weights
                params.variances = given.variances if given.variances is not None else params.variances
        check_finite_params(params, self.name)
        return params

    def _set_var_floor(self, sample: torch.Tensor) -> None:
        self.var_floor_ = float(self.variance_floor) * float(sample.var(0, unbiased=False).mean())

    def _warm_state(self, previous: "DiagonalGMM", sample: torch.Tensor) -> GMMParams:
        self.warm_started_ = True  # no re-seeding: see _reseed
        self._set_var_floor(sample)
        self.n_components_ = previous.means_.shape[0]
        return GMMParams(*(t.to(device=sample.device, dtype=self.torch_dtype).clone()
                           for t in (previous.weights_, previous.means_, previous.variances_)))

    def _step(self, source, params: GMMParams, generator: torch.Generator) -> tuple[GMMParams, float, int]:
        stats = accumulate(source, params)
        params = m_step(stats, float(self.reg_covar), self.var_floor_, self.torch_dtype)
        check_finite_params(params, self.name)
        return params, stats.mean_loglik, self._reseed(params, stats.nk, generator)

    def _converged(self, previous: float | None, current: float) -> bool:
        return previous is not None and abs(current - previous) < float(self.tol)

    def _warm_value(self, previous: "DiagonalGMM") -> float | None:
        return getattr(previous, "lower_bound_", None)

    def _finish(self, source, params: GMMParams) -> None:
        self.weights_, self.means_, self.variances_ = params.weights, params.means, params.variances
        self.lower_bound_ = self.history_[-1]

    def _objective(self) -> float:
        return self.lower_bound_

    def _after_fit(self) -> None:
        if not self.converged_:
            self._warn_not_converged()

    def _shift_state(self, params: GMMParams, delta: torch.Tensor) -> GMMParams:
        return GMMParams(params.weights, params.means + delta, params.variances)

    def _shift_fitted(self, delta: torch.Tensor) -> None:
        self.means_ = self.means_ + delta

    def _state_tensors(self, params: GMMParams) -> dict[str, torch.Tensor]:
        return {"weights": params.weights, "means": params.means, "variances": params.variances}

    def _restore_tensors(self, tensors: dict[str, torch.Tensor]) -> GMMParams:
        return GMMParams(tensors["weights"], tensors["means"], tensors["variances"])

    def _extra_progress(self) -> dict:
        return {"var_floor": self.var_floor_, "n_components": self.n_components_,
                "warm_started": getattr(self, "warm_started_", False)}

    @property
    def n_reseeded_(self) -> list[int]:
        """Components re-seeded after each iteration's M-step."""
        return self.n_fixed_

    def _given_params(self, n_features: int, device: torch.device) -> GMMParams:
        """``means_init``, ``weights_init`` and 1 / ``precisions_init`` as tensors (None where not given), checked
        with scikit-learn's messages."""
        K = self.n_components

        def tensor(value, name: str, shape: tuple[int, ...]) -> torch.Tensor | None:
            if value is None:
                return None
            array = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value, dtype=np.float64)
            if array.shape != shape:
                raise InputError(f"The parameter '{name}' should have the shape of {shape}, but got {array.shape}; "
                                 f"pass {name}_init of shape {shape} (n_components={K})")
            if not np.isfinite(array).all():
                raise InputError(f"The parameter '{name}' holds NaN or Inf; pass finite {name}_init")
            return torch.as_tensor(array, dtype=torch.float64, device=device)

        weights = tensor(self.weights_init, "weights", (K,))
        if weights is not None:
            low, high = float(weights.min()), float(weights.max())
            if low < 0.0 or high > 1.0:
                raise InputError(f"The parameter 'weights' should be in the range [0, 1], but got max value "
                                 f"{high:.5f}, min value {low:.5f}")
            if not np.isclose(float(weights.sum()), 1.0):
                raise InputError(f"The parameter 'weights' should be normalized, but got sum(weights) = "
                                 f"{float(weights.sum()):.5f}; divide weights_init by its sum")
        precisions = tensor(self.precisions_init, "diag precision", (K, n_features))
        if precisions is not None and not bool((precisions > 0).all()):
            raise InputError("'diag precision' should be positive; pass precisions_init > 0")
        means = tensor(self.means_init, "means", (K, n_features))
        means = None if means is None else self._frame(means.to(self.torch_dtype))  # the fitting frame
        cast = lambda t: None if t is None else t.to(self.torch_dtype)  # noqa: E731
        return GMMParams(cast(weights), cast(means), cast(None if precisions is None else 1.0 / precisions))

    def _complete_given(self, given: GMMParams, X: torch.Tensor) -> GMMParams:
        """The given means with the given weights (else uniform) and variances (else the data's, + ``reg_covar``)."""
        K = self.n_components
        self.n_components_ = K
        weights = given.weights if given.weights is not None else torch.full((K,), 1.0 / K, dtype=self.torch_dtype,
                                                                            device=X.device)
        variances = given.variances if given.variances is not None else (
            X.var(0, unbiased=False).expand(K, -1) + float(self.reg_covar))
        return GMMParams(weights, given.means, variances.contiguous())

    def _reseed(self, params: GMMParams, nk: torch.Tensor, generator: torch.Generator) -> int:
        """Re-seed dead components (``split_dead``), except in a warm start.

        A warm start exists to keep items' codes. Its dead components are left
        empty instead: splitting the heaviest component renumbers half of its
        items (on MovieLens latest-small, 2 x 128, refit after 10% new items,
        re-seeding kept 62% of the old items' full IDs and leaving them empty 89%,
        at the same RMSE).
        """
        if float(self.min_component_count) <= 0 or getattr(self, "warm_started_", False):
            return 0
        n = split_dead(params, nk, float(self.min_component_count), generator)
        if n:
            logger.debug("%s: re-seeded %d components at iteration %d", self.name, n, len(self.history_) + 1)
        return n

    def _warn_not_converged(self) -> None:
        change = abs(self.history_[-1] - self.history_[-2]) if len(self.history_) > 1 else float("nan")
        warnings.warn(
            f"{self.name}: EM did not converge in {self.max_iter} iterations "
            f"(last change of the mean log-likelihood {change:.3g} >= tol {self.tol:g}); "
            "increase max_iter or tol",
            ConvergenceWarning,
            stacklevel=4,
        )

    # ---------------------------------------------------------------- inference

    @property
    def params(self) -> GMMParams:
        """The fitted parameters as one record (in the caller's frame)."""
        return GMMParams(self.weights_, self.means_, self.variances_)

    def _frame_params(self) -> GMMParams:
        """The fitted parameters in the fitting frame (means - ``origin_``), where inference computes."""
        return GMMParams(self.weights_, self._frame(self.means_), self.variances_)

    @property
    def precisions_(self) -> torch.Tensor:
        """1 / variances_ (K', D), scikit-learn's name."""
        return 1.0 / self.variances_

    @property
    def codebook(self) -> torch.Tensor:
        """The codewords (K', D): the component means."""
        return self.means_

    def _check(self, X) -> torch.Tensor:
        check_fitted(self, "means_")
        return as_matrix(X, dtype=self.means_.dtype, device=self.means_.device, n_features=self.means_.shape[1],
                         what="X", owner=type(self).__name__)

    def _chunks(self, X: torch.Tensor):
        rows = chunk_rows(self.chunk_size, X.device)
        for start in range(0, X.shape[0], rows):
            yield X[start : start + rows]

    def score_samples(self, X) -> np.ndarray | torch.Tensor:
        """log p(x) of each row (N,); numpy in, numpy out."""
        x = self._check(X)
        params = self._frame_params()
        return like_input(torch.cat([torch.logsumexp(weighted_log_prob(self._frame(c), params), 1)
                                     for c in self._chunks(x)]), X)

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per sample."""
        return float(np.mean(np.asarray(torch.as_tensor(self.score_samples(X)).cpu(), dtype=np.float64)))

    def predict_proba(self, X) -> np.ndarray | torch.Tensor:
        """Posterior responsibilities γ (N, K'); numpy in, numpy out."""
        x = self._check(X)
        params = self._frame_params()
        return like_input(torch.cat([e_step(self._frame(c), params)[0] for c in self._chunks(x)]), X)

    def predict(self, X) -> np.ndarray | torch.Tensor:
        """MAP component k* = argmax_k γ_ik (N,) int64; numpy in, numpy out."""
        x = self._check(X)
        return like_input(torch.cat([self.assign_chunk(c) for c in self._chunks(x)]), X)

    def fit_predict(self, X, y=None) -> np.ndarray | torch.Tensor:
        """``fit(X).predict(X)``: the MAP components after the fit's final parameters."""
        return self.fit(X).predict(X)

    def assign_chunk(self, chunk: torch.Tensor) -> torch.Tensor:
        """MAP codes (n,) of a validated chunk (n, D) in the model's dtype and device (size-constrained with ``balance``)."""
        wlp = weighted_log_prob(self._frame(chunk), self._frame_params())
        if getattr(self, "balance", None) is not None:
            return balanced_assign(-wlp, self.balance, self.max_cluster_size)
        return wlp.argmax(1)

    def to(self, device) -> "DiagonalGMM":
        """Move the fitted parameters to ``device``; returns self."""
        self.weights_, self.means_, self.variances_ = (t.to(device) for t in (self.weights_, self.means_, self.variances_))
        self._move_origin(device)
        return self

    # ---------------------------------------------------------------- model files

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Fitted tensors for a model file."""
        return {"weights": self.weights_, "means": self.means_, "variances": self.variances_, **self._origin_tensors()}

    def load_state(self, tensors: dict[str, torch.Tensor]) -> "DiagonalGMM":
        """Restore fitted tensors written by :meth:`state_tensors`."""
        w, m, v = tensors["weights"], tensors["means"], tensors["variances"]
        if m.ndim != 2 or v.shape != m.shape or w.shape != (m.shape[0],) or m.shape[0] > self.n_components:
            raise InputError(f"{self.name}: stored GMM tensors have inconsistent shapes; refit the model")
        if not bool((v > 0).all()) or not bool((w > 0).all()):
            bad = "variances" if not bool((v > 0).all()) else "weights"
            raise InputError(f"{self.name}: tensor {bad!r} holds values <= 0 (they must be positive); refit the model")
        self.weights_, self.means_, self.variances_ = (t.to(self.torch_dtype) for t in (w, m, v))
        self.n_components_, self.n_features_in_ = m.shape
        self._load_origin(tensors)
        return self
