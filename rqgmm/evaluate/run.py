"""``rqgmm evaluate``: what semantic IDs are worth in CTR models on the user's own data.

item embeddings → tokenizers (fitted on the item vectors only) → codes → CTR
backbones × content variants × seeds, in two regimes (every declared field;
item fields withheld), trained on the first 80% of the rows, early-stopped on
the next 10%, scored once on the last 10%, overall and per popularity slice.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from rqgmm.ctr import FeatureSpec, ItemContent, run_ctr, score
from rqgmm.ctr.content import item_keys
from rqgmm.ctr.log import LogPart
from rqgmm.data.splits import Split, cut_points
from rqgmm.evaluate.config import EvaluateConfig
from rqgmm.evaluate.grid import Grid, Job, RecordStore, Result, StoredArrays
from rqgmm.evaluate.inputs import EvaluationData
from rqgmm.evaluate.stages import measured
from rqgmm.evaluate.slices import MIN_SLICE_ROWS, SLICES, slice_codes
from rqgmm.evaluate.tokenizer_stage import TokenizerStage, quiet_library_logs, timed, tokenizer_input_names
from rqgmm.evaluate.verdict import TestRows, comparisons
from rqgmm.evaluate.id_checks import diagnostic_records
from rqgmm.runtime.device import resolve_device, torch_threads
from rqgmm.runtime.parallel import rank_and_size

logger = logging.getLogger(__name__)

SIDE_FIELDS, CONTENT_ONLY = "side fields", "content only"
SPLIT_RULE = {
    True: "time: rows sorted by (time, user, item), stable; the first 80% train, the next 10% validation, the last "
          "10% test (one global cut: every training row precedes every validation row, which precedes every test row)",
    False: "random (no time column): the same 80/10/10 cut after a seeded shuffle (seed 0)",
}


def distinct_rows(X: np.ndarray) -> int:
    """The number of distinct rows of X (M, D) (by a 64-bit hash of each row)."""
    return len(np.unique(pd.util.hash_pandas_object(pd.DataFrame(X), index=False).to_numpy()))


# ----------------------------------------------------------------------------- split


def split_rows(data: EvaluationData, config: EvaluateConfig) -> Split:
    """80/10/10 by one global time cut (random when there is no time column; both orders and the labels of
    each part are checked by ``inputs.check_inputs``).

    The encoded log is put in split order (``data.order``, an argsort of its int columns) and
    given the training part's vocabularies once; the parts are views of it.
    """
    log = data.interactions
    n = len(log)
    first, second = cut_points(n)
    # the unordered log is emptied as it is copied; the times go unless the retrieval task reads them later
    ordered = log.ordered(data.order, first, release=True, times=config.task != "ctr")
    data.interactions, data.order = ordered, None  # one int table from here on, and no order array
    split = Split(LogPart(ordered, 0, first), LogPart(ordered, first, second), LogPart(ordered, second, n),
                  kind="time" if data.timed else "random")
    logger.info("%r", split)
    return split


def regimes(data: EvaluationData, config: EvaluateConfig) -> dict[str, FeatureSpec]:
    """"side fields": every declared field; "content only": item-table categorical and bag fields withheld."""
    spec = FeatureSpec(config.user, config.item, config.label, config.categorical, config.bag, config.numeric,
                       config.embedding_dim)
    item_fields = [c for c in (*config.categorical, *config.bag)
                   if c in data.interactions.items.codes or c in data.interactions.items.bags]
    if not item_fields:
        logger.info("no item categorical or bag fields: the content-only regime equals side fields; run it once")
        return {SIDE_FIELDS: spec}
    return {SIDE_FIELDS: spec, CONTENT_ONLY: spec.without(item_fields)}


# ----------------------------------------------------------------------------- CTR


@dataclass(frozen=True)
class Variant:
    """One content variant: its name, the tokenizer behind its IDs, and its content tables."""

    name: str
    tokenizer: str | None
    content: tuple[ItemContent, ...]

    @property
    def label(self) -> str:
        return self.name if self.tokenizer is None else f"{self.name} ({self.tokenizer})"


def slice_metrics(labels: np.ndarray, predictions: np.ndarray, masks: Mapping[str, np.ndarray],
                  device: str | torch.device = "cpu", threads: int | None = None) -> dict:
    """AUC and LogLoss per popularity slice (``masks``: slice -> its rows, bool (N,)), computed on ``device``
    with ``threads`` torch threads on a CPU, as the run trained (:func:`~rqgmm.ctr.train.score`); None where a
    slice has too few rows or one class."""
    device = resolve_device(device)
    y, p = torch.as_tensor(labels, device=device), torch.as_tensor(predictions, device=device)
    out = {}
    with torch_threads(threads):
        for name in SLICES:
            mask = torch.as_tensor(masks[name], device=device)
            n, positives = int(mask.sum()), int(torch.count_nonzero(y[mask]))
            ok = n >= MIN_SLICE_ROWS and 0 < positives < n
            metrics = score(y[mask], p[mask]) if ok else {"auc": None, "logloss": None}
            out[name] = {**metrics, "n": n}
    return out


class Evaluation:
    """The CTR task of one ``evaluate`` over checked data; ``run()`` returns the records.

    Parameters
    ----------
    data, config : the checked inputs and options.
    dataset : names the data in the records.
    store : where finished runs are kept and found again (None: nothing is kept).
    progress : one bar over the grid (None: when stderr is a terminal).
    stage : the tokenizer fits this task reads (None: a stage of its own); the retrieval task may share it.
    """

    def __init__(self, data: EvaluationData, config: EvaluateConfig, dataset: str = "data",
                 store: RecordStore | None = None, progress: bool | None = None,
                 stage: TokenizerStage | None = None) -> None:
        self.data, self.config, self.dataset, self.store = data, config, dataset, store
        self.stage = stage if stage is not None else TokenizerStage(data, config, dataset)
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.records: list[dict] = []
        self.seconds: dict[str, float] = {}

    def run(self) -> list[dict]:
        self.split = measured("split", lambda: split_rows(self.data, self.config))
        # one byte a test row (the slice names as a categorical), not the 20 of their strings
        self.slices = pd.Categorical.from_codes(slice_codes(self.split.train[self.config.item],
                                                            self.split.test[self.config.item]), categories=SLICES)
        # copies (N_test rows), not views: the int table they would keep alive goes after the CTR runs
        self.test = TestRows(np.array(self.split.test[self.config.label]), np.array(self.split.test.users()),
                             self.slices)
        self.specs = regimes(self.data, self.config)
        self.records.append(self.stage.record("inputs", items=len(self.data.items), distinct_vectors={
            column: distinct_rows(vectors) for column, vectors in self.data.vectors.items()}))
        tokenizers, ctr = self._tokenizer_jobs(), self._ctr_jobs()
        grid = Grid(self.store, progress=self.progress, desc=f"{self.dataset}: grid",
                    meta=dict(device=self.config.device), on_disk=("ctr",))
        with grid.plan(self.stage.pending(tokenizers), ctr):
            self.records += self._stage("tokenizers", lambda: self.stage.run(grid, tokenizers))
            codes = self._codes(tokenizers)
            self.records += self._stage("diagnostics", lambda: diagnostic_records(self.stage, self.split.train,
                                                                                   self.config))
            self._stage("ctr", lambda: self._ctr(grid, ctr, codes))
        if self.config.task == "ctr":  # the last reader of the rows is done: the intervals need the test rows only
            self.split = None
            self.data.release_rows()
        test = self.test if rank_and_size()[0] == 0 else None  # rank 0 reads the predictions (others: unused)
        spill = None if self.store is None else self.store.directory  # the influence table's file, if any
        self.records += self._stage("intervals", lambda: comparisons(self.records, test, directory=spill))
        return self.records

    def _stage(self, name: str, work):
        """``work()``, its seconds in ``self.seconds`` and its seconds and peak memory in the open StageMeter."""
        return timed(self.seconds, name, lambda: measured(name, work))

    # ------------------------------------------------------------------ tokenizers

    def _tokenizer_jobs(self) -> list[Job]:
        """Every method × seed × input (fused, or each modality); none without an ids variant."""
        cfg = self.config
        methods = cfg.methods if any(v.startswith("ids") for v in cfg.variants) else ()
        return self.stage.jobs(methods, tokenizer_input_names(self.data, cfg))

    def _codes(self, jobs: list[Job]) -> dict:
        """The stage's codes as ItemContent, by (method, seed): one table per modality."""
        kept = {}
        for job in jobs:
            label, seed, name = self.stage.held(job)
            codes, sizes = self.stage.codes[(label, seed, name)]
            feature = f"{label.replace(' ', '_')}_{name}"  # "rqgmm_2x256_fused" in a sweep, as before otherwise
            kept.setdefault((label, seed), []).append(ItemContent.codes(feature, self._item_keys, codes, sizes))
        return kept

    # ------------------------------------------------------------------------- CTR

    def _variant_names(self) -> list[tuple[str, str | None]]:
        """(variant, tokenizer) pairs: none and embedding once, each ids variant per tokenizer configuration."""
        configurations = self.stage.configurations(self.config.methods)
        return [(name, label) for name in self.config.variants
                for label in (configurations if name.startswith("ids") else (None,))]

    @property
    def _slice_masks(self) -> dict[str, np.ndarray]:
        """Each popularity slice's test rows (bool (N_test,)), the masks the intervals use too."""
        return {name: self.test.mask(name) for name in SLICES}

    @functools.cached_property
    def _item_keys(self) -> pd.Index:
        """The items' string keys (M,), made once and shared by every content table (not one copy each)."""
        return item_keys(self.data.item_ids)

    @functools.cached_property
    def _embeddings(self) -> tuple[ItemContent, ...]:
        return tuple(ItemContent.embedding(c, self._item_keys, v) for c, v in self.data.vectors.items())

    def _variant(self, name: str, tokenizer: str | None, seed: int, codes: dict) -> Variant:
        if tokenizer is None:
            return Variant(name, None, self._embeddings if name == "embedding" else ())
        extra = self._embeddings if name == "ids+embedding" else ()
        return Variant(name, tokenizer, (*codes[(tokenizer, seed)], *extra))

    def _ctr_jobs(self) -> list[Job]:
        """regime × seed × variant × backbone."""
        cfg = self.config
        return [Job("ctr", dict(regime=regime, seed=seed, variant=name, tokenizer=tokenizer, backbone=backbone),
                    f"{backbone}, {Variant(name, tokenizer, ()).label}, {regime}, seed {seed}")
                for regime in self.specs for seed in cfg.seed_list for name, tokenizer in self._variant_names()
                for backbone in cfg.backbones]

    def _ctr(self, grid: Grid, jobs: list[Job], codes: dict) -> None:
        for result in grid.run(jobs, lambda job: self._train(job, codes)):
            self.records.append(result.record)
            if "predictions" in result.arrays:  # runs stored before predictions were kept have none
                r, arrays = result.record, result.arrays  # with a store: the file's name, read when compared
                self.test.predictions[(r["regime"], r["backbone"], r["seed"], r["label"])] = \
                    arrays.lazy("predictions") if isinstance(arrays, StoredArrays) else arrays["predictions"]

    def _train(self, job: Job, codes: dict) -> Result:
        regime, seed = job.ident["regime"], job.ident["seed"]
        variant = self._variant(job.ident["variant"], job.ident["tokenizer"], seed, codes)
        with quiet_library_logs():
            record, predictions = self._ctr_record(self.specs[regime], regime, seed, variant, job.ident["backbone"])
        return Result(record, dict(predictions=predictions), summary=f"test AUC {record['auc']:.4f}, {record['epochs']} epochs",
                      rows=record["epochs"] * len(self.split.train))

    def _ctr_record(self, spec: FeatureSpec, regime: str, seed: int, variant: Variant,
                    backbone: str) -> tuple[dict, np.ndarray]:
        """One CTR run's record and its test predictions (N_test,) float32 (kept for the bootstrap intervals)."""
        split, cfg = self.split, self.config
        result = run_ctr(split.train, split.valid, split.test, spec, content=variant.content, backbone=backbone,
                         train_config=replace(cfg.train, seed=seed))
        labels = split.test[cfg.label]
        costs = [c.cost(spec.embedding_dim) for c in variant.content]
        record = self.stage.record("ctr", regime=regime, variant=variant.name, tokenizer=variant.tokenizer,
                                  label=variant.label, backbone=backbone, seed=seed, **result.metrics,
                                  slices=slice_metrics(labels, result.predictions, self._slice_masks, cfg.device,
                                                       cfg.train.num_threads),
                                  content_parameters=sum(c["parameters"] for c in costs),
                                  bytes_per_item=sum(c["bytes_per_item"] for c in costs),
                                  epochs=len(result.training.valid_auc), n_test=len(labels))
        return record, np.asarray(result.predictions, dtype=np.float32)
