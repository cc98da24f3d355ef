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
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np

from rqgmm.files.modalities import fused
from rqgmm.ids.codes import CodesTable
from rqgmm.ids.metrics import merged_items, report, shared_vectors
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


def fit_model(method: str, X: np.ndarray, config: EvaluateConfig, seed: int) -> tuple:
    """Fit one tokenizer on X (M, D) at the config's (first) shape: (the model, its fit's warnings, seconds)."""
    base, balanced = split_method(method)
    cls = tokenizer_class(base)
    levels, codebook_size = config.shapes[0]
    start = time.perf_counter()
    model = cls(levels=cls.fixed_levels or levels, codebook_size=codebook_size, random_state=seed,
                device=config.device, progress=False, **({"balance": BALANCE} if balanced else {}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X)
    return model, [str(w.message) for w in caught], time.perf_counter() - start


def describe_fit(model, method: str, X: np.ndarray, item_ids: np.ndarray, fit_warnings: list[str],
                 history=None) -> tuple[dict, CodesTable]:
    """The metrics (without ``fit_seconds``) and the codes table of a fitted tokenizer on the item vectors X."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        codes = np.asarray(model.encode(X))
    table = CodesTable(codes, item_ids, model.effective_codebook_sizes, split_method(method)[0])
    X_hat = np.asarray(model.decode(codes)) if model.reconstructs else None
    metrics = report(codes, model.codebook_sizes, X if X_hat is not None else None, X_hat)
    history = getattr(model, "history_", None) if history is None else history
    per_level = isinstance(history, list) and all(isinstance(h, list) for h in history)
    metrics.update(history=history if per_level else [], shared_items=metrics["collided_items"],
                   shared_vectors=shared_vectors(X), merged_items=merged_items(codes, X),
                   warnings=sorted({*fit_warnings, *(str(w.message) for w in caught)}))
    return metrics, table


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
    (method, K, seed, modality); other methods, and a K with one depth, are fitted shape by shape.

    Parameters
    ----------
    shapes : list of (levels, codebook size)
        The sweep's shapes.
    """

    def __init__(self, shapes: list[tuple[int, int]]) -> None:
        self.shapes = list(shapes)
        self.models: dict[tuple, tuple] = {}  # (method, K, seed, modality) -> (deepest model, warnings, seconds)

    def deepest(self, method: str, shape: tuple[int, int]) -> int | None:
        """The deepest levels of the sweep at ``shape``'s K when ``method`` nests and several depths share it."""
        depths = [levels for levels, size in self.shapes if size == shape[1]]
        nested = tokenizer_class(split_method(method)[0]).nested
        return max(depths) if nested and len(depths) > 1 else None

    def fit(self, method: str, X: np.ndarray, item_ids: np.ndarray, config: EvaluateConfig, seed: int,
            modality: str = "") -> tuple[dict, CodesTable]:
        """:func:`fit_tokenizer` at the one-shape ``config``'s shape, cut from the deepest fit where it nests.

        A cut record names the shape it was cut from (``cut_from``); its ``fit_seconds`` is this call's own time
        (the shared fit counts once, in the call that ran it)."""
        levels, size = config.shapes[0]
        deepest = self.deepest(method, (levels, size))
        if deepest is None:
            return fit_tokenizer(method, X, item_ids, config, seed=seed)
        start, key = time.perf_counter(), (method, size, seed, modality)
        if key not in self.models:
            self.models[key] = fit_model(method, X, replace(config, levels=deepest), seed)
        model, fit_warnings, _ = self.models[key]
        history = getattr(model, "history_", None)
        cut = model.truncate(levels) if levels < deepest else model
        metrics, table = describe_fit(cut, method, X, item_ids, fit_warnings,
                                      history=history[:levels] if isinstance(history, list) else None)
        metrics.update(fit_seconds=time.perf_counter() - start,
                       **({"cut_from": setting_label(deepest, size)} if levels < deepest else {}))
        return metrics, table


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
            logger.info("%s: %s", dataset, describe_shape(len(data.item_ids)))
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
        return records

    def held(self, job: Job) -> tuple[str, int, str]:
        """(configuration name, seed, modality) of a tokenizer job."""
        return self.configuration(job.ident["tokenizer"], self._shape(job)), job.ident["seed"], job.ident["modality"]

    def _shape(self, job: Job) -> tuple[int, int]:
        ident = job.ident
        return (ident["levels"], ident["codebook_size"]) if "levels" in ident else self.config.shapes[0]

    def _inputs(self, modalities: set[str]) -> dict[str, np.ndarray]:
        """The vectors each ID stack is fitted on: (M, D) by modality ("fused" or an embedding column)."""
        vectors = self.data.vectors
        return {name: fused(vectors) if name == "fused" else vectors[name] for name in modalities}

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
