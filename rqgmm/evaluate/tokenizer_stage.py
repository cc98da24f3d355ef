"""The tokenizer stage both ``evaluate`` tasks read: the tokenizer jobs, fitted (or found) through the grid,
and their codes by (method, seed, modality).

The CTR task and the retrieval task each receive one :class:`TokenizerStage`;
under ``--task both`` they receive the same one, so each tokenizer is fitted
once and its record written once. A job's identity (tokenizer, seed,
modality) is its grid key, unchanged from the releases where each task built
its own jobs, so earlier outputs resume.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import replace
from typing import ClassVar

import numpy as np
import torch

from rqgmm.files.modalities import fused
from rqgmm.runtime.device import resolve_device
from rqgmm.runtime.source import fits_on_device
from rqgmm.runtime.validation import as_numpy
from rqgmm.ids.codes import CodesTable
from rqgmm.ids.metrics import (merged_items, prefix_counts, report, shared_vectors, squared_errors_by_depth,
                                total_squares, vector_groups)
from rqgmm.ids.shape import describe as describe_shape
from rqgmm.tokenizers.base import tokenizer_class
from rqgmm.evaluate.config import EvaluateConfig
from rqgmm.evaluate.grid import Grid, Job, Result
from rqgmm.evaluate.inputs import EvaluationData
from rqgmm.evaluate.tables import setting_label

logger = logging.getLogger(__name__)

#: A tokenizer name ``METHOD+balanced`` fits METHOD with this size-constrained assignment (``max_cluster_size`` 1.5).
BALANCE = "greedy"


@contextlib.contextmanager
def quiet_library_logs() -> Iterator[None]:
    """Keep the library's per-level INFO lines out of the progress bars; warnings still show."""
    root = logging.getLogger("rqgmm")
    previous = root.level
    root.setLevel(max(previous, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(previous)


def timed(seconds: dict[str, float], stage: str, work: Callable):
    """``work()``, its wall time (s, one decimal) kept in ``seconds[stage]``."""
    start = time.perf_counter()
    result = work()
    seconds[stage] = round(time.perf_counter() - start, 1)
    return result


def tokenizer_input_names(data: EvaluationData, config: EvaluateConfig) -> list[str]:
    """``["fused"]`` (several modalities fused into one ID stack) or the embedding columns (one stack each)."""
    return ["fused"] if config.tokenize == "fused" and len(data.vectors) > 1 else list(data.vectors)


def split_method(name: str) -> tuple[str, bool]:
    """``"rqkmeans+balanced"`` -> ``("rqkmeans", True)``; a plain method name -> ``(name, False)``."""
    base, _, suffix = name.partition("+")
    return base, suffix == "balanced"


_PARTS: ContextVar[dict[str, float] | None] = ContextVar("tokenizer_parts", default=None)


@contextlib.contextmanager
def measured_parts() -> Iterator[dict[str, float]]:
    """The seconds the tokenizer fits run inside spend in each part (fit, encode, reconstruction, ...), summed.

    For benchmarks: outside this block nothing is measured (and no device is synchronised)."""
    parts: dict[str, float] = {}
    token = _PARTS.set(parts)
    try:
        yield parts
    finally:
        _PARTS.reset(token)


@contextlib.contextmanager
def part(name: str) -> Iterator[None]:
    """Count the block's wall time (the device's work included) under ``name`` in :func:`measured_parts`."""
    parts = _PARTS.get()
    if parts is None:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
        parts[name] = parts.get(name, 0.0) + time.perf_counter() - start


class HostRows:
    """Rows of a tensor X (N, D) (on a GPU, say) as numpy arrays, read a block at a time: what the item-vector
    metrics (:func:`~rqgmm.ids.metrics.vector_groups`, :func:`~rqgmm.ids.metrics.total_squares`) read of X,
    without a host copy of the whole (``np.asarray`` of it gives one)."""

    def __init__(self, X: torch.Tensor) -> None:
        self.X, self.shape = X, tuple(X.shape)
        self.dtype = np.dtype(str(X.dtype).removeprefix("torch."))

    @staticmethod
    def of(X):
        """X itself when it is a numpy array (or memory map), else its :class:`HostRows`."""
        return HostRows(X) if isinstance(X, torch.Tensor) else X

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        return as_numpy(self.X[rows])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return as_numpy(self.X).astype(dtype or self.dtype, copy=False)


class ItemVectors:
    """What every tokenizer's description needs of the item vectors X (N, D) alone, computed once per X.

    ``groups``: :func:`~rqgmm.ids.metrics.vector_groups` (N,); ``shared``: the share of items with a duplicate
    vector; ``total_squares``: Σ|x − mean(x)|² (relative MSE's denominator). :meth:`of` keeps one per live X
    (by identity, without keeping X alive): the X of a stage is never changed in place.
    """

    _known: ClassVar[dict[int, tuple[weakref.ref, ItemVectors]]] = {}

    def __init__(self, X) -> None:
        self.X = weakref.ref(X)
        with part("vectors"):
            self.groups = vector_groups(HostRows.of(X))
            self.shared = shared_vectors(X, self.groups)

    @functools.cached_property
    def total_squares(self) -> float:
        with part("vectors"):
            return total_squares(HostRows.of(self.X()))

    @classmethod
    def of(cls, X: np.ndarray) -> ItemVectors:
        """The facts of X, computed on the first call for this X."""
        for key, (ref, _) in list(cls._known.items()):
            if ref() is None:
                del cls._known[key]
        ref, known = cls._known.get(id(X), (None, None))
        if ref is None or ref() is not X:
            known = cls(X)
            cls._known[id(X)] = (weakref.ref(X), known)
        return known


def fit_model(method: str, X: np.ndarray, config: EvaluateConfig, seed: int) -> tuple:
    """Fit one tokenizer on X (M, D) at the config's (first) shape: (the model, its fit's warnings, seconds)."""
    base, balanced = split_method(method)
    cls = tokenizer_class(base)
    levels, codebook_size = config.shapes[0]
    start = time.perf_counter()
    model = cls(levels=cls.fixed_levels or levels, codebook_size=codebook_size, random_state=seed,
                device=config.device, progress=False, **({"balance": BALANCE} if balanced else {}))
    with warnings.catch_warnings(record=True) as caught, part("fit"):
        warnings.simplefilter("always")
        model.fit(X)
    return model, [str(w.message) for w in caught], time.perf_counter() - start


class Encoded:
    """A fitted tokenizer's codes of the item vectors X (M, D), encoded once, and its squared reconstruction
    errors at the ``depths`` asked (a decode of the first d levels), each shape of a sweep reads them.

    Attributes
    ----------
    model : the fitted tokenizer; codes : (M, L) int64; warnings : list of str (the encoding's);
    errors : dict of depth -> Σ|x − x̂_d|² (empty when the model does not reconstruct).
    counts : the item counts of the codes' distinct prefixes of each length 1..L (one sort of the deepest codes'
    keys: :func:`~rqgmm.ids.metrics.prefix_counts`), computed on the first :meth:`describe`.
    """

    def __init__(self, model, X: np.ndarray, fit_warnings: list[str], depths: list[int] | None = None) -> None:
        with warnings.catch_warnings(record=True) as caught, part("encode"):
            warnings.simplefilter("always")
            self.codes = as_numpy(model.encode(X))
        self.model, self.fit_warnings, self.warnings = model, fit_warnings, [str(w.message) for w in caught]
        self.errors, self.counts = {}, None
        if model.reconstructs:
            device = getattr(model, "fitted_device", None)
            with part("reconstruction"):
                depths = depths or [self.codes.shape[1]]
                self.errors = (squared_errors_by_depth(X, self._decoded, depths) if device is None
                               or device.type == "cpu" else self._errors_on(device, X, depths))

    def _decoded(self, rows: slice, depth: int) -> np.ndarray:
        return np.asarray(self.model.decode(self.codes[rows, :depth]))

    def _errors_on(self, device, X, depths: list[int], chunk: int = 1 << 18) -> dict[int, float]:
        """Σ|x − x̂_d|² for each depth, computed where the model decodes (a GPU): each chunk of X (N, D), an array
        or a tensor, and of its codes crosses once, in float64 sums, instead of every depth's reconstruction
        coming back to the host."""
        errors = {depth: torch.zeros((), dtype=torch.float64, device=device) for depth in depths}
        for s in range(0, len(X), chunk):
            x = torch.as_tensor(X[s:s + chunk], device=device).double()
            codes = torch.as_tensor(self.codes[s:s + chunk], device=device)
            for depth in depths:
                errors[depth] += (x - self.model.decode(codes[:, :depth]).double()).square().sum()
        return {depth: float(total) for depth, total in errors.items()}

    def describe(self, method: str, item_ids: np.ndarray, vectors: ItemVectors,
                 levels: int | None = None) -> tuple[dict, CodesTable]:
        """The metrics (without ``fit_seconds``) and the codes table of the tokenizer's first ``levels`` levels
        (default: all)."""
        levels = self.codes.shape[1] if levels is None else levels
        model, codes = self.model, self.codes[:, :levels]
        with part("codes table"):
            table = CodesTable(codes, item_ids, model.effective_codebook_sizes[:levels], split_method(method)[0])
        with part("id metrics"):
            squared = (self.errors[levels], vectors.total_squares) if levels in self.errors else None
            if self.counts is None:
                self.counts = prefix_counts(self.codes)
            counts = self.counts[:levels]
            metrics = report(table.codes, model.codebook_sizes[:levels], squared_errors=squared, counts=counts)
            history = getattr(model, "history_", None)
            per_level = isinstance(history, list) and all(isinstance(h, list) for h in history)
            merged = merged_items(table.codes, None, vectors.groups, counts[-1])
            metrics.update(history=history[:levels] if per_level else [], shared_items=metrics["collided_items"],
                           shared_vectors=vectors.shared, merged_items=merged,
                           warnings=sorted({*self.fit_warnings, *self.warnings}))
        return metrics, table


def describe_fit(model, method: str, X: np.ndarray, item_ids: np.ndarray,
                 fit_warnings: list[str]) -> tuple[dict, CodesTable]:
    """The metrics (without ``fit_seconds``) and the codes table of a fitted tokenizer on the item vectors X."""
    return Encoded(model, X, fit_warnings).describe(method, item_ids, ItemVectors.of(X))


def fit_tokenizer(method: str, X: np.ndarray, item_ids: np.ndarray, config: EvaluateConfig,
                  seed: int) -> tuple[dict, CodesTable]:
    """Fit one tokenizer on the item vectors X (M, D) at the config's (first) shape; its metrics and its codes
    table (sizes in its metadata)."""
    start = time.perf_counter()
    model, fit_warnings, _ = fit_model(method, X, config, seed)
    metrics, table = describe_fit(model, method, X, item_ids, fit_warnings)
    metrics["fit_seconds"] = time.perf_counter() - start
    return metrics, table


class SharedFits:
    """The tokenizer fits of a shape sweep, shared by nested shapes.

    Where a method nests (``Tokenizer.nested``: the first l levels of an L-level fit are the l-level fit for the
    same seed), the sweep's shapes with one codebook size K are all cut from one fit of the deepest of them, per
    (method, K, seed, modality): X is encoded once at the deepest shape, a shallower shape's codes are the
    prefix of those codes, and every depth's reconstruction error comes from one pass over X. Other methods, and
    a K with one depth, are fitted shape by shape.

    Parameters
    ----------
    shapes : list of (levels, codebook size)
        The sweep's shapes.
    """

    def __init__(self, shapes: list[tuple[int, int]]) -> None:
        self.shapes = list(shapes)
        self.models: dict[tuple, Encoded] = {}  # (method, K, seed, modality) -> the deepest fit, encoded
        self.waiting: dict[tuple, set[int]] = {}  # the same key -> the depths not described yet

    def deepest(self, method: str, shape: tuple[int, int]) -> int | None:
        """The deepest levels of the sweep at ``shape``'s K when ``method`` nests and several depths share it."""
        depths = [levels for levels, size in self.shapes if size == shape[1]]
        nested = tokenizer_class(split_method(method)[0]).nested
        return max(depths) if nested and len(depths) > 1 else None

    def fit(self, method: str, X: np.ndarray, item_ids: np.ndarray, config: EvaluateConfig, seed: int,
            modality: str = "") -> tuple[dict, CodesTable]:
        """:func:`fit_tokenizer` at the one-shape ``config``'s shape, cut from the deepest fit where it nests.

        A cut record names the shape it was cut from (``cut_from``); its ``fit_seconds`` is this call's own time
        (the shared fit and encoding count once, in the call that ran them)."""
        levels, size = config.shapes[0]
        deepest = self.deepest(method, (levels, size))
        if deepest is None:
            return fit_tokenizer(method, X, item_ids, config, seed=seed)
        start, key = time.perf_counter(), (method, size, seed, modality)
        if key not in self.models:
            model, fit_warnings, _ = fit_model(method, X, replace(config, levels=deepest), seed)
            self.waiting[key] = {depth for depth, k in self.shapes if k == size}
            self.models[key] = Encoded(model, X, fit_warnings, sorted(self.waiting[key]))
        metrics, table = self.models[key].describe(method, item_ids, ItemVectors.of(X), levels)
        self.waiting[key].discard(levels)
        if not self.waiting[key]:  # every shape cut: the codes are the records' now
            del self.models[key], self.waiting[key]
        metrics.update(fit_seconds=time.perf_counter() - start,
                       **({"cut_from": setting_label(deepest, size)} if levels < deepest else {}))
        return metrics, table

    def forget(self) -> None:
        """Drop the deepest fits still held (a shape of theirs was found in the grid's store, not fitted)."""
        self.models.clear()
        self.waiting.clear()


class TokenizerStage:
    """The tokenizer fits of one ``evaluate`` over checked data, shared by its tasks.

    Parameters
    ----------
    data, config : the checked inputs and options.
    dataset : names the data in the records.

    Attributes
    ----------
    codes : dict of (method, seed, modality) -> (codes (M, L) int array, codebook sizes list)
        Every tokenizer fitted (or found) so far.
    """

    def __init__(self, data: EvaluationData, config: EvaluateConfig, dataset: str = "data") -> None:
        if not config.shape_given:
            logger.info("%s: %s", dataset, describe_shape(len(data.item_ids), config.levels, config.codebook_size))
        self.data, self.config, self.dataset = data, config.with_shape(len(data.item_ids)), dataset
        self.codes: dict[tuple[str, int, str], tuple[np.ndarray, list[int]]] = {}
        self.fits = SharedFits(self.config.shapes)

    def record(self, kind: str, **values) -> dict:
        """A record of this evaluation: its kind, the dataset and the split, then ``values``."""
        return dict(kind=kind, dataset=self.dataset, split="time" if self.data.timed else "random", **values)

    def jobs(self, methods, modalities) -> list[Job]:
        """Every method × shape × seed × modality (fused, or one embedding column), in that order.

        A job's identity names its shape only in a sweep, so the keys of one-shape grids stay as they were."""
        return [Job("tokenizer", dict(tokenizer=m, seed=seed, modality=name, **self._shape_ident(shape)),
                    f"tokenizer {self.configuration(m, shape)} on {name}, seed {seed}")
                for m in methods for shape in self.config.shapes for seed in self.config.seed_list
                for name in modalities]

    def _shape_ident(self, shape: tuple[int, int]) -> dict:
        return dict(levels=shape[0], codebook_size=shape[1]) if self.config.sweep else {}

    def configuration(self, method: str, shape: tuple[int, int]) -> str:
        """A tokenizer configuration's name: the method, and in a sweep its shape ("rqgmm 2x256")."""
        return f"{method} {setting_label(*shape)}" if self.config.sweep else method

    def configurations(self, methods) -> list[str]:
        """The names of every method × shape, in job order."""
        return [self.configuration(m, shape) for m in methods for shape in self.config.shapes]

    def pending(self, jobs: list[Job]) -> list[Job]:
        """The jobs this stage has not fitted (or found) yet."""
        return [job for job in jobs if self.held(job) not in self.codes]

    def run(self, grid: Grid, jobs: list[Job]) -> list[dict]:
        """Fit (or find) the pending ``jobs``; the records of those, in job order (none for jobs already held)."""
        todo = self.pending(jobs)
        inputs = self._inputs({job.ident["modality"] for job in todo}) if grid.share(todo) else {}
        records = []
        for job, result in zip(todo, grid.run(todo, lambda job: self._fit(job, inputs))):
            records.append(result.record)
            self.codes[self.held(job)] = (result.arrays["codes"], result.arrays["codebook_sizes"].tolist())
        self.fits.forget()
        return records

    def held(self, job: Job) -> tuple[str, int, str]:
        """(configuration name, seed, modality) of a tokenizer job."""
        return self.configuration(job.ident["tokenizer"], self._shape(job)), job.ident["seed"], job.ident["modality"]

    def _shape(self, job: Job) -> tuple[int, int]:
        ident = job.ident
        return (ident["levels"], ident["codebook_size"]) if "levels" in ident else self.config.shapes[0]

    def _inputs(self, modalities: set[str]) -> dict:
        """The vectors each ID stack is fitted on: (M, D) by modality ("fused" or an embedding column)."""
        vectors = self.data.vectors
        return {name: self._fused() if name == "fused" else vectors[name] for name in modalities}

    def _fused(self):
        """The fused vectors (M, D) (:func:`~rqgmm.files.modalities.fused`): written straight to the GPU the fits
        run on where they fit there (the same float32 values, read there by the fits; no host copy beside the
        modalities' own), else a numpy array."""
        vectors, device = self.data.vectors, resolve_device(self.config.device)
        shape = (len(self.data.item_ids), sum(v.shape[1] for v in vectors.values()))
        if not fits_on_device(*shape, torch.float32, device):
            return fused(vectors)
        return fused(vectors, torch.empty(shape, dtype=torch.float32, device=device))

    def _fit(self, job: Job, inputs: dict[str, np.ndarray]) -> Result:
        (label, seed, name), shape = self.held(job), self._shape(job)
        with quiet_library_logs():
            one_shape = replace(self.config, levels=shape[0], codebook_size=shape[1])
            metrics, table = self.fits.fit(job.ident["tokenizer"], inputs[name], self.data.item_ids, one_shape,
                                           seed=seed, modality=name)
        # the levels the codes have: a method with fixed levels (VQ-VAE) keeps its own
        record = self.record("tokenizer", tokenizer=label, modality=name, seed=seed,
                             setting=setting_label(metrics["levels"], shape[1]), **metrics)
        return Result(record, dict(codes=table.codes, codebook_sizes=np.asarray(table.codebook_sizes)),
                      summary=f"collision rate {metrics['collision_rate']:.4f}")
