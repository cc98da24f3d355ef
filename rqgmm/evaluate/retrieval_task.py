"""``rqgmm evaluate --task retrieval``: what semantic IDs are worth for generative retrieval on the user's log.

item embeddings -> tokenizers (the same jobs, keys and records as the CTR
task's) -> per (IDs, seed): a next-item model trained on the leave-one-out
training sequences, early-stopped on validation Recall@10, then one
constrained beam search per test user -> Recall/NDCG@K at the item level
(collision correction) and the ID level, overall and per popularity slice.

Every run holds two controls: random IDs (the first tokenizer's ID rows dealt
to the items at random: same shape, codebook sizes and collision sizes) and
the item-ID model (the same transformer, one token per item), and two
untrained baselines on the same split (:mod:`rqgmm.retrieval.baselines`):
most-popular and content KNN. The model runs are jobs of the evaluation grid,
so they resume and spread over torchrun ranks as the CTR runs do; the
baselines take seconds and are recomputed.

Each record keeps the test users its list hit at rank <= 10 (``hits@10``) and
the cold targets' users, so the report's verdict can bootstrap over test users.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path
from dataclasses import asdict, replace

import numpy as np

from rqgmm.evaluate.grid import Grid, Job, RecordStore, Result
from rqgmm.files.modalities import fused
from rqgmm.evaluate.names import COLD_TWINS
from rqgmm.evaluate.run import Evaluation
from rqgmm.evaluate.slices import SLICES, popularity_slices
from rqgmm.evaluate.tokenizer_stage import TokenizerStage, quiet_library_logs, timed, tokenizer_input_names
from rqgmm.retrieval.cold import PLACEMENTS
from rqgmm.retrieval.baselines import CONTENT_KNN, MOST_POPULAR, content_knn_ranks, most_popular_ranks
from rqgmm.retrieval.metrics import KS, inflation, recall_ndcg
from rqgmm.retrieval.sequences import Sequences, build_sequences
from rqgmm.retrieval.train import FULL, QUICK, RetrievalConfig, fit_retriever, histories
from rqgmm.retrieval.vocab import ITEM_ID, RANDOM, ItemTokens
from rqgmm.runtime.device import resolve_device

logger = logging.getLogger(__name__)

SPLIT = ("leave-one-out per user (as TIGER): each user's items in time order (same-timestamp items ordered by a "
         "seeded hash of (user, item), never by item id or file order); the last one the test target, the one "
         "before it the validation target, the rest training; users with fewer than 3 items dropped")
#: Target sets of the verdict: every test user, those whose test item is in a training sequence, and the rest.
TARGETS = ("all", "warm", "cold")


def retrieval_config(config) -> RetrievalConfig:
    """The training settings of an EvaluateConfig: QUICK or FULL, on its device."""
    return replace(QUICK if config.quick else FULL, device=config.device, epsilon=config.epsilon)


class RetrievalEvaluation:
    """The retrieval task of one ``evaluate`` over checked data; ``run()`` returns the records.

    Parameters
    ----------
    stage : the tokenizer fits this task reads (its data, config and dataset name are the task's); the CTR
        task may share it. The task's tokenizer jobs are the stage's, one ID stack per (method, seed).
    store, progress : as for :class:`~rqgmm.evaluate.run.Evaluation`.
    """

    def __init__(self, stage: TokenizerStage, store: RecordStore | None = None, progress: bool | None = None) -> None:
        self.stage, self.store = stage, store
        self.data, self.config, self.dataset = stage.data, stage.config, stage.dataset
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.records: list[dict] = []
        self.seconds: dict[str, float] = {}

    def run(self) -> list[dict]:
        cfg = self.config
        self.training = retrieval_config(cfg)
        name = tokenizer_input_names(self.data, cfg)
        self.modality = name[0] if len(name) == 1 else "fused"
        tokenizers = self.stage.jobs(cfg.methods, [self.modality])
        runs = [Job("retrieval", dict(ids=ids, seed=seed, sequence=cfg.sequence, dedup=cfg.dedup,
                                      model=asdict(self.training) | dict(device=None)),
                    f"retrieval, {ids} IDs, seed {seed}")
                for seed in cfg.seed_list for ids in self.id_names]
        grid = Grid(self.store, progress=self.progress, desc=f"{self.dataset}: retrieval",
                    meta=dict(device=cfg.device))
        with grid.plan(self.stage.pending(tokenizers), runs):
            self.records += timed(self.seconds, "tokenizers", lambda: self.stage.run(grid, tokenizers))
            models = timed(self.seconds, "models", lambda: grid.run(runs, self._retrieve))
        self.records += [r for result in models for r in with_twins(result.record)]
        self.records += timed(self.seconds, "baselines", self._baselines)
        return self.records

    def _baselines(self) -> list[dict]:
        """Most-popular and content-KNN records, one per seed (the same ranks: they pair with every model's)."""
        seqs = self.sequences
        length = self.training.history
        found = {MOST_POPULAR: most_popular_ranks(seqs.popularity(), seqs.test),
                 CONTENT_KNN: content_knn_ranks(self.embeddings, histories(seqs, "test", length), seqs.test,
                                                resolve_device(self.training.device))}
        return [self.stage.record("retrieval", ids=ids, tokenizer=None, seed=seed, **self._metrics(rank, rank),
                                  epochs=0, valid_recall=[], history=length, id_tokens=0, shared_items=0,
                                  users=seqs.n_users, dropped_users=seqs.dropped_users, sequence=self.config.sequence)
                for seed in self.config.seed_list for ids, rank in found.items()]

    @functools.cached_property
    def embeddings(self) -> np.ndarray:
        """The item vectors (M, D) the tokenizers read: content KNN's and the dense rule's."""
        vectors = self.data.vectors
        return fused(vectors) if self.modality == "fused" else vectors[self.modality]

    @property
    def id_names(self) -> list[str]:
        """The requested tokenizers, then the two controls."""
        return [*self.config.methods, RANDOM, ITEM_ID]

    @property
    def dedup(self) -> str:
        return self.config.dedup

    @functools.cached_property
    def sequences(self) -> Sequences:
        """The leave-one-out sequences (built on first use; bad input raises before any training)."""
        log, cfg = self.data.interactions, self.config
        return build_sequences(log.codes[cfg.user], log.item_rows, log.labels, log.times, len(self.data.items),
                               cfg.sequence, cfg.label)

    def _tokens(self, ids: str, seed: int) -> ItemTokens:
        if ids == ITEM_ID:
            return ItemTokens.item_ids(len(self.data.items))
        codes = self.stage.codes
        if ids == RANDOM:
            return ItemTokens.random_like(*codes[(self.config.methods[0], seed, self.modality)], seed=seed,
                                          dedup=self.dedup)
        return ItemTokens.semantic(*codes[(ids, seed, self.modality)], dedup=self.dedup)

    @functools.cached_property
    def slices(self) -> np.ndarray:
        """The popularity slice of each user's test item (U,) by training-sequence counts."""
        seqs = self.sequences
        return popularity_slices(seqs.items[seqs.training_mask()], seqs.test)

    def _retrieve(self, job: Job) -> Result:
        ids, seed = job.ident["ids"], job.ident["seed"]
        tokens = self._tokens(ids, seed)
        with quiet_library_logs():
            retriever = fit_retriever(self.sequences, tokens, replace(self.training, seed=seed), self.embeddings)
            by_rule, id_rank = retriever.rule_ranks(histories(self.sequences, "test", retriever.length),
                                                    self.sequences.test)
        item_rank = by_rule["prefix"]
        record = self.stage.record("retrieval", ids=ids, tokenizer=None if ids in (RANDOM, ITEM_ID) else ids,
                                   seed=seed, **self._metrics(item_rank, id_rank), epochs=len(retriever.valid_recall),
                                   valid_recall=retriever.valid_recall, history=retriever.length,
                                   id_tokens=tokens.generated, shared_items=self._shared(tokens),
                                   users=self.sequences.n_users, dropped_users=self.sequences.dropped_users,
                                   sequence=self.config.sequence, dedup=self.dedup if tokens.length > 1 else None,
                                   **self._depth(retriever, "prefix"))
        for rule in COLD_TWINS:  # the same model's list with another cold placement (a record of its own: with_twins)
            if rule in by_rule:
                record[rule] = dict(self._metrics(by_rule[rule], id_rank), **self._depth(retriever, rule))
        return Result(record, summary=f"test item-level Recall@10 {record['item']['recall@10']:.4f}, "
                                      f"{record['epochs']} epochs")

    def _metrics(self, item_rank: np.ndarray, id_rank: np.ndarray) -> dict:
        item, ids = recall_ndcg(item_rank), recall_ndcg(id_rank)
        slices = {name: dict(n=int((self.slices == name).sum()), **recall_ndcg(item_rank[self.slices == name]))
                  for name in SLICES}
        cold = self.slices == "cold"
        targets = {name: dict(n=int(mask.sum()), **recall_ndcg(item_rank[mask]))
                   for name, mask in zip(TARGETS, (np.ones_like(cold), ~cold, cold))}
        return dict(item=item, id=ids, inflation=inflation(item, ids), slices=slices, targets=targets, ks=list(KS),
                    **{"hits@10": np.flatnonzero(item_rank <= 10).tolist(),
                       "cold_users": np.flatnonzero(cold).tolist()})

    @staticmethod
    def _depth(retriever, rule: str) -> dict:
        """The prefix rule's depth and weight at the ``rule``'s placement ("prefix": log pi, "tiger": TIGER's), and
        the validation Recall@10 (cold, all) at each depth (none without a prefix rule, nor for "dense")."""
        if not retriever.prefix_rule or rule not in PLACEMENTS:
            return {}
        depth, weight, recall = retriever.placement(rule)
        return dict(cold_depth=depth, cold_weight=weight,
                    depth_recall={name: {str(d): v for d, v in by.items()} for name, by in recall.items()})

    @staticmethod
    def _shared(tokens: ItemTokens) -> int:
        """Items whose generated ID another item shares."""
        _, inverse, counts = np.unique(tokens.id_keys(), return_inverse=True, return_counts=True)
        return int((counts[inverse] > 1).sum())


#: Suffix of the ids of the dense cold rule's records (the prefix rule's keep the tokenizer's name).
DENSE = COLD_TWINS["dense"]
#: Keys of a record that describe the prefix rule's validation choice (each twin carries its own, or none).
PREFIX_RULE_KEYS = ("cold_depth", "cold_weight", "depth_recall")


def with_twins(record: dict) -> list[dict]:
    """A model record (prefix rule placed by log pi), and its twins (:data:`~.names.COLD_TWINS`) for the cold
    placements it holds, ids suffixed (``+tiger``: TIGER's placement, ``+dense``: the dense re-rank)."""
    twins = {suffix: record.pop(rule) for rule, suffix in COLD_TWINS.items() if rule in record}
    base = {k: v for k, v in record.items() if k not in PREFIX_RULE_KEYS}  # the prefix rule's choice is not theirs
    return [record, *({**base, **twin, "ids": record["ids"] + suffix} for suffix, twin in twins.items())]


#: The header lines that describe the CTR task only (left out when the task is retrieval alone).
CTR_ONLY = ("split", "backbones", "variants", "max_epochs", "patience", "categorical", "bag", "numeric")


def describe_retrieval(config, header: dict) -> dict:
    """The report header's settings ``header`` with the retrieval task's (unchanged for the CTR task alone)."""
    if config.task == "ctr":
        return header
    header = {k: v for k, v in header.items() if config.task == "both" or k not in CTR_ONLY}
    training = retrieval_config(config)
    return dict(header, task=config.task, retrieval_split=SPLIT, sequence=config.sequence,
                retrieval_ids=(f"dedup {config.dedup}: " + ("the model generates the L codes and the dedup token "
                               "(unique IDs); cold items join by TIGER's prefix rule (on the first d codes, d "
                               "chosen on the validation split; a prefix's cold items by content affinity; placed "
                               "after the warm items likelier than pi times the prefix's first generated item, or "
                               f"right after that item, TIGER's placement, in the '{COLD_TWINS['tiger']}' rows) or, "
                               f"in the '{DENSE}' rows, by "
                               f"LIGER's dense re-rank (the same model; its projection learned with a sampled softmax; "
                               f"cold and warm items merged by log-probability); "
                               f"both capped at epsilon {config.epsilon} of the list"
                               if config.dedup == "generated" else "the model generates the L codes; a shared ID "
                               "stands for its items, ranked by training popularity")),
                retrieval_model=(f"decoder-only transformer, dim {training.model.dim}, {training.model.layers} "
                                 f"layers, history <= {training.history} items, <= {training.max_epochs} epochs "
                                 + (f"and <= {training.max_windows:,} training windows " if training.max_windows
                                    else "")
                                 + f"(patience {training.patience}), learning rate {training.lr:g} "
                                 f"({training.schedule}), {training.crop} window cuts, beam {training.beam}"))


#: The record kinds each task writes (tokenizer records are shared).
TASK_KINDS = {"ctr": ("ctr", "comparison"), "retrieval": ("retrieval",)}


def with_other_task(out: Path, records: list[dict], task: str) -> list[dict]:
    """``records`` and the other task's records that an earlier run left in ``out/results.json``.

    ``--task retrieval`` into an ``--out`` holding a CTR run keeps the CTR records (and the reverse); the
    run store's check has already refused an ``--out`` of other inputs or settings. A tokenizer record
    the earlier run holds and this one does not is kept too.
    """
    path = Path(out) / "results.json"
    if task == "both" or not path.is_file():
        return records
    earlier = json.loads(path.read_text()).get("records", [])
    other = TASK_KINDS["retrieval" if task == "ctr" else "ctr"]
    fitted = {(r.get("tokenizer"), r.get("seed"), r.get("modality")) for r in records if r["kind"] == "tokenizer"}
    kept = [r for r in earlier if r.get("kind") in other or (
        r.get("kind") == "tokenizer" and (r.get("tokenizer"), r.get("seed"), r.get("modality")) not in fitted)]
    if kept:
        logger.info("kept %d records of the earlier %s run in %s", len(kept), "/".join(other), out)
    return records + kept


def evaluate_tasks(data, config, dataset: str, store, progress: bool | None) -> tuple[list[dict], dict]:
    """The records and stage seconds of the task(s) ``config.task`` names: ctr, retrieval or both.

    Both tasks receive one tokenizer stage: a tokenizer they share is fitted (or found) once, its record kept once.
    """
    stage = TokenizerStage(data, config, dataset)
    evaluations: list[Evaluation | RetrievalEvaluation] = []
    if config.task in ("ctr", "both"):
        evaluations.append(Evaluation(data, config, dataset=dataset, store=store, progress=progress, stage=stage))
    if config.task in ("retrieval", "both"):
        retrieval = RetrievalEvaluation(stage, store=store, progress=progress)
        retrieval.sequences  # noqa: B018 (checks the sequences before the CTR task trains)
        evaluations.append(retrieval)
    records, seconds = [], {}
    for evaluation in evaluations:
        records += evaluation.run()
        prefix = "retrieval " if isinstance(evaluation, RetrievalEvaluation) else ""
        seconds.update({f"{prefix}{k}": v for k, v in evaluation.seconds.items()})
    return records, seconds
