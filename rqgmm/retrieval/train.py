"""Train a next-item model on leave-one-out sequences; early stopping on validation item-level Recall@10
(NDCG@10 breaks ties).

Training windows are cut from each user's training sequence (the last
S = H + 1 items, then the S before them, ...; padded) and held on the device:
once, or each epoch at a drawn shift (``crop="random"``: a target is read after
a different stretch of its history each epoch). Each epoch shuffles them on the
device and takes Adam steps (fused; the rate constant or warm-up then cosine
decay over the epoch budget) with no host sync; the summed loss is read once
per epoch. Validation runs the constrained beam search on the device for (a
sample of) the users and reads its IDs back once. The best epoch's weights are restored.

With generated dedup tokens (``ItemTokens.prefix_length < generated``) the
beam runs over the warm items' full IDs and cold items join by TIGER's prefix
rule (:mod:`.cold`, share of the list capped by ``epsilon``; its match depth
chosen on the validation users once training ends, its cold items ordered by
content affinity given the items' embeddings; placed by ``log pi``, and as
TIGER placed them in the "tiger" rule) or, given the items' embeddings,
by LIGER's dense re-rank (:mod:`.dense`, same cap); both rules read one model
(trained with the dense loss when embeddings are given) and
``RetrievalConfig.cold`` picks the one early stopping reads; otherwise the
beam runs over every item's ID and the collision correction ranks the items
behind a shared ID (:mod:`.metrics`).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from rqgmm.runtime.device import check_precision, matmul_precision, resolve_device, torch_threads
from rqgmm.runtime.seeding import child_seed, cpu_generator, forked_rng
from rqgmm.ids.keys import row_keys
from rqgmm.ids.trie import PrefixTrie
from rqgmm.retrieval.baselines import recent_query, unit_rows
from rqgmm.retrieval.cold import EPSILON, PLACEMENTS, calibrated_weight, choose_depth, cold_cap, placed_ranks
from rqgmm.retrieval.beam import TrieMasks, beam_search
from rqgmm.retrieval.dense import COLD_RULES, DENSE_WEIGHT, cold_share, dense_rule_ranks
from rqgmm.retrieval.metrics import KS, IdGroups, ranks, recall_ndcg
from rqgmm.retrieval.model import ModelConfig, NextItemModel
from rqgmm.retrieval.sequences import Sequences
from rqgmm.retrieval.vocab import ItemTokens

logger = logging.getLogger(__name__)

#: Automatic batches keep at least this many steps per epoch (small logs need the updates; as the CTR trainer).
MIN_STEPS_PER_EPOCH = 100
#: Bytes for one step's logits (B x S x V_generated floats, kept by autograd) off a GPU.
LOGIT_BYTES = 256 << 20
#: On a GPU: a quarter of the card's memory (its total, not what is free, so a model's batch is the same on every
#: card of a kind), at most this. 4 GiB before: the item-ID model of 200,000 items got 47 windows a step (2,199
#: steps an epoch against 404 for a semantic-ID model) and took 211 s of a 5M-row log's 5-minute seed on an H100.
GPU_LOGIT_BYTES = 16 << 30
EVAL_BATCH = {"cuda": 4096, "cpu": 256}
#: The most validation users the prefix rule's depth is chosen on (:func:`fit_retriever`): every user of the 5M-row
#: planted log (99,957; one beam pass of about 4 s on an H100), a seeded sample of larger logs.
DEPTH_USERS = 100_000
#: Learning-rate schedules (:class:`RetrievalConfig`), and the cosine one's share of warm-up steps.
SCHEDULES = ("constant", "cosine")
WARMUP = 0.05
#: Where training windows are cut each epoch (:class:`Windows`).
CROPS = ("fixed", "random")


@dataclass(frozen=True)
class RetrievalConfig:
    """Training settings of the retrieval task.

    Parameters
    ----------
    model : ModelConfig
    history : int
        H_max, the most history items the model reads; H is the smaller of it
        and the 95th percentile of the training sequences' lengths.
    max_epochs, patience : int
        Epochs, and epochs without a better validation Recall@10 before stopping.
    max_windows : int or None
        The most training windows one model reads over its epochs (None: no limit): a log of R windows an epoch
        (on average over the random crops' shifts, :meth:`Windows.mean_count`) trains at most
        ``min(max_epochs, max(1, max_windows // R))`` epochs (:func:`epoch_budget`; the cosine schedule spans
        the steps of those epochs, their shifts drawn up front), so a large log's model costs a bounded number
        of steps while a small one keeps ``max_epochs``.
    lr : float
        The peak learning rate (Adam).
    schedule : {"constant", "cosine"}
        "cosine": the rate rises linearly over the first :data:`WARMUP` of the epoch budget's steps
        (:func:`epoch_budget`), then falls along a half cosine to 0 at the budget's end (early stopping may end
        sooner).
    crop : {"fixed", "random"}
        Where the training windows are cut (:func:`training_windows`): the same cuts every epoch, or cuts
        shifted by a shift drawn each epoch (from "retrieval batches"), so a target is read after a different
        stretch of its history each epoch.
    batch_size : int or None
        Windows per step; None: at most 256, at most windows / MIN_STEPS_PER_EPOCH (at least 8), and fewer
        where one step's logits would exceed :func:`logit_bytes`.
    beam : int
        IDs generated per user (>= the largest K).
    valid_users : int
        Users whose validation recall decides early stopping (a seeded sample when there are more).
    seed : int
        The parent of the named child seeds (:mod:`rqgmm.runtime.seeding`) of the initialisation
        ("retrieval init"), the batch order ("retrieval batches"), dropout ("retrieval dropout") and the
        validation users ("valid users"); training leaves the caller's global random state alone.
    device : str
    epsilon : float in [0, 1]
        With generated dedup tokens: the share of the generated list that cold items may take (TIGER's
        prefix rule, :mod:`.cold`, and the dense rule, :mod:`.dense`); 0 leaves cold items unreachable.
    cold : {"prefix", "tiger", "dense"}
        The cold-item rule whose ranks :meth:`Retriever.ranks` returns and early stopping reads ("dense" needs
        the items' embeddings; while training "prefix" and "tiger" are the same rule, TIGER's as published).
    dense_weight : float
        Weight of the dense rule's projection loss (:data:`.dense.DENSE_WEIGHT`), when embeddings are given.
    num_threads : int or None
        torch CPU threads while training and generating (None: leave torch's setting). 1 by default, as
        the CTR trainer's: on a shared 2-core machine a step of the quick model took 0.25 s on one thread
        and 2.3 s on two.
    precision : {"fp32", "tf32", "bf16"}
        Precision of the training steps' matrix products on a GPU
        (:func:`rqgmm.runtime.device.matmul_precision`; the CPU always computes in float32). Generation
        (validation, test) computes in float32 at every setting. "bf16" (autocast) is offered for measurement
        only: on the 5M-row planted log it ruined both models after one epoch
        (``python -m rqgmm.bench.retrieval_precision``).
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    history: int = 20
    max_epochs: int = 20
    patience: int = 3
    max_windows: int | None = None
    lr: float = 2e-3
    schedule: str = "constant"
    crop: str = "fixed"
    batch_size: int | None = None
    beam: int = max(KS)
    valid_users: int = 20000
    seed: int = 0
    device: str = "cpu"
    epsilon: float = EPSILON
    cold: str = "prefix"
    dense_weight: float = DENSE_WEIGHT
    num_threads: int | None = 1
    precision: str = "fp32"


#: Chosen on MovieLens-100k's validation split (rqkmeans 3 x 128, seed 0; issue 27): 8 constant-rate epochs
#: left the model under-trained (validation Recall@10 0.050, still rising); 20 epochs with random window cuts and
#: a cosine decay from 4e-3 reached 0.074-0.075 over the last epochs. No window budget (every log trains up to 20
#: epochs): the quick mode is the CPU's, for small logs. Its width re-chosen after the schedule fix, on the same
#: validation split, rqkmeans 3 x 128, seeds 0-2 (best epoch's validation Recall@10, mean; seconds a model on one
#: CPU thread beside another fit): width 32 0.0892 (82 s), width 64 0.1083 (106 s), width 64 with history 50
#: 0.1115 (228 s), history 50 0.0828, peak rate 2e-3 0.0655, 30 epochs 0.0971 (two seeds): width 64.
QUICK = RetrievalConfig(model=ModelConfig(dim=64, layers=2, heads=2), history=20, max_epochs=20, patience=4,
                        lr=4e-3, schedule="cosine", crop="random", valid_users=2000)
#: The full mode takes QUICK's schedule and cuts at its own size and peak rate. On large logs it validates on at
#: most 5,000 users and reads at most 500,000 windows per model (issue 27: on a 5M-row planted log, 100,000 users,
#: 103,343 windows at H = 37 at the fixed cut, 153,955 on average over the shifts: 3 epochs there; 4 before the
#: budget read the shifted cuts' count, whose windows exceeded it). A log of at most 16,666 windows keeps all 30
#: epochs, and one of at most 5,000 users the whole validation split:
#: MovieLens-100k (943 users, 55,375 positive ratings: at most 943 + 55,375 / 50 = 2,051 windows at H = 50 at the
#: fixed cut) keeps all 30 epochs.
#: Its training steps' products are TensorFloat-32 on a GPU: on one H100 the 5M log's 200,000-item model trained
#: 1.56x faster with the same validation Recall@10 (``python -m rqgmm.bench.retrieval_precision``).
FULL = RetrievalConfig(model=ModelConfig(dim=128, layers=2, heads=4), history=50, max_epochs=30, patience=4,
                       schedule="cosine", crop="random", valid_users=5000, max_windows=500_000, precision="tf32")


# ----------------------------------------------------------------------------- windows


def history_length(seqs: Sequences, cap: int) -> int:
    """H: min(cap, the 95th percentile of the training sequences' lengths), at least 1."""
    lengths = np.diff(seqs.starts) - 2
    return int(max(1, min(cap, np.ceil(np.quantile(lengths, 0.95)))))


def _left_padded(items: np.ndarray, starts: np.ndarray, stops: np.ndarray, width: int) -> np.ndarray:
    """Rows (R, width): items[stops - width : stops] clipped at starts, left-padded with -1."""
    index = stops[:, None] - width + np.arange(width)[None, :]
    return np.where(index >= starts[:, None], items[np.maximum(index, 0)], -1)


def training_windows(seqs: Sequences, slots: int, shift: int = 0) -> np.ndarray:
    """Windows (R, S) of the training sequences, cut from each user's end (-1: padding, either side).

    Shift 0: each user's last S items, the S before them, ...; shift r in [0, S - 2] moves every cut r items
    later (the last window then holds the user's last S - r items, right-padded). Consecutive windows overlap
    by one item, so every training item but a user's first is a target exactly once whatever the shift.
    """
    counts = _window_counts(seqs, slots, shift)
    starts, stops = seqs.starts[:-1], seqs.starts[1:] - 2
    user = np.repeat(np.arange(seqs.n_users), counts)
    back = np.arange(len(user)) - np.repeat(np.cumsum(counts) - counts, counts)
    ends = stops[user] + shift - back * (slots - 1)
    index = ends[:, None] - slots + np.arange(slots)[None, :]
    inside = (index >= starts[user][:, None]) & (index < stops[user][:, None])
    return np.where(inside, seqs.items[np.clip(index, 0, len(seqs.items) - 1)], -1)


def _window_counts(seqs: Sequences, slots: int, shift: int) -> np.ndarray:
    """The number of windows (U,) :func:`training_windows` cuts from each user's training sequence at ``shift``."""
    if not 0 <= shift <= max(0, slots - 2):
        raise ValueError(f"Expected shift in [0, {slots - 2}], got {shift}")
    starts, stops = seqs.starts[:-1], seqs.starts[1:] - 2
    return 1 + -(-np.maximum(0, stops - starts + shift - slots) // (slots - 1))


def histories(seqs: Sequences, part: str, length: int) -> np.ndarray:
    """The last ``length`` items (U, H) before each user's ``part`` target ("valid" or "test"), left-padded."""
    stops = seqs.starts[1:] - (2 if part == "valid" else 1)
    return _left_padded(seqs.items, seqs.starts[:-1], stops, length)


# ----------------------------------------------------------------------------- generation


@torch.no_grad()
def generate(model: NextItemModel, masks: TrieMasks, history: np.ndarray, beam: int, batch: int,
             dense: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The ``beam`` best existing IDs (U, beam, G) after each history (U, H), generated on the model's device,
    their log-probabilities (U, beam), and (``dense``) the dense rule's query (U, E), else None.

    Each batch's history is read once: the beam and the query start from the same hidden states.
    """
    device = model.table.device
    model.eval()
    ids, logp, query = [], [], []
    for i in range(0, len(history), batch):
        rows = torch.as_tensor(history[i:i + batch], device=device)
        context = model.hidden(model.flat(rows))
        found = beam_search(model, masks, rows, beam, context)
        ids.append(found[0])
        logp.append(found[1])
        if dense:
            query.append(model.query_of(context[0][:, -1]))
    return (torch.cat(ids).cpu().numpy(), torch.cat(logp).cpu().numpy(),
            torch.cat(query).cpu().numpy() if dense else None)


@dataclass
class Retriever:
    """A trained model with what it needs to generate and score.

    Attributes
    ----------
    model : NextItemModel
    masks : TrieMasks
    tokens : ItemTokens
    groups : IdGroups
    length : int
        H, history items read.
    cold : ndarray bool (M,)
        The items no training sequence holds.
    unit : ndarray float (M, E) or None
        The items' unit embeddings (the dense rule's, and the prefix rule's content affinity; None without them).
    share : float
        pi, the validation share of cold targets (:func:`.dense.cold_share`): the dense rule's, and the prefix
        rule's placement weight ``log pi`` (:func:`.cold.calibrated_weight`).
    valid_recall : list of float
        Validation item-level Recall@10 per epoch.
    depth : int or None
        The prefix rule's match depth (:mod:`.cold`), set with :attr:`weight` by :meth:`choose_depth`; None
        while training: TIGER's rule as published (all L codes, candidates in item-row order, each right after
        its prefix's first generated item), so early stopping reads what it read before the depth choice existed.
    weight : float
        The prefix rule's placement weight: 0 while training, ``log pi`` from :meth:`choose_depth` on.
    depth_recall : dict
        Validation Recall@10 of the prefix rule at each depth, over the cold targets and over all
        (``{"cold": {depth: r}, "all": {depth: r}}``), from :meth:`choose_depth`.
    tiger_depth : int or None
        The match depth of the prefix rule at TIGER's placement (w = 0, the "tiger" rule), chosen alike; None
        until :meth:`choose_depth`.
    tiger_recall : dict
        :attr:`depth_recall` at TIGER's placement.
    """

    model: NextItemModel
    masks: TrieMasks
    tokens: ItemTokens
    groups: IdGroups
    length: int
    config: RetrievalConfig
    cold: np.ndarray
    unit: np.ndarray | None = None
    share: float = 0.5
    valid_recall: list[float] = field(default_factory=list)
    depth: int | None = None
    weight: float = 0.0
    depth_recall: dict[str, dict[int, float]] = field(default_factory=dict)
    tiger_depth: int | None = None
    tiger_recall: dict[str, dict[int, float]] = field(default_factory=dict)

    @property
    def prefix_rule(self) -> bool:
        """Whether cold items join by the prefix rule (generated dedup tokens), not through the beam."""
        return self.tokens.prefix_length < self.tokens.generated

    def ranks(self, history: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Item-level and ID-level ranks (U,) of the targets after each history (U, H), by ``config.cold``'s rule.

        Only that rule is computed (early stopping reads it each epoch). With a cold rule the ID level is the
        beam's list before cold items join.
        """
        by_rule, id_rank = self.rule_ranks(history, targets, (self.config.cold,))
        return by_rule[self.config.cold if self.config.cold in by_rule else "prefix"], id_rank

    def rule_ranks(self, history: np.ndarray, targets: np.ndarray,
                   rules: tuple[str, ...] = COLD_RULES) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Item-level ranks (U,) per cold rule of ``rules`` (one beam search), and the ID-level ranks.

        Without generated dedup tokens there is no cold rule: the one entry "prefix" holds the collision
        correction's ranks. "tiger" is present when asked for after :meth:`choose_depth`, "dense" when asked for
        and the model learned the projection.
        """
        dense = "dense" in rules and self.unit is not None
        ids, logp, query = self._generate(history, dense)
        sizes = list(self.tokens.sizes[:self.tokens.generated])
        item_rank, id_rank = ranks(ids, sizes, targets, self.groups)
        if not self.prefix_rule:
            return {"prefix": item_rank}, id_rank
        cap = cold_cap(self.config.epsilon, self.config.beam)
        items = self._items_of(ids)
        found = {}
        asked = {rule: self.placement(rule)[:2] for rule in PLACEMENTS if rule in rules}
        asked = {rule: at for rule, at in asked.items() if at[0] is not None}
        for depth in dict.fromkeys(d for d, _ in asked.values()):  # one candidate choice per depth
            here = [rule for rule, (d, _) in asked.items() if d == depth]
            found.update(zip(here, self._prefix_ranks(items, logp, history, targets, depth,
                                                       tuple(asked[rule][1] for rule in here))))
        if query is not None:
            found["dense"] = dense_rule_ranks(items, logp, query, self.unit, self.cold, targets, cap,
                                              float(self.model.scale.detach()), self.share, self.model.table.device)
        return found, id_rank

    def placement(self, rule: str) -> tuple[int | None, float, dict[str, dict[int, float]]]:
        """The prefix rule's depth, weight and validation Recall@10 by depth at ``rule``'s placement (a key of
        :data:`.cold.PLACEMENTS`): "prefix", placed by ``log pi`` (all L codes while training), or "tiger", TIGER's
        placement (depth None until :meth:`choose_depth`)."""
        if rule == "prefix":
            return self.depth or self.tokens.prefix_length, self.weight, self.depth_recall
        return self.tiger_depth, PLACEMENTS[rule], self.tiger_recall

    def choose_depth(self, history: np.ndarray, targets: np.ndarray) -> int:
        """Set :attr:`depth` (and :attr:`tiger_depth`) to the prefix depth with the best Recall@10 on the
        (validation) users' targets at its placement.

        One beam search; every depth 1..L is scored on its list at each placement (:func:`.cold.choose_depth`:
        the cold targets' recall, then all targets', then the deepest). Without a prefix rule or with epsilon 0
        both depths stay L. The placement weight becomes ``log pi`` (:func:`.cold.calibrated_weight`).
        """
        L = self.tokens.prefix_length
        self.depth, self.weight = L, calibrated_weight(self.share)  # from here on the rule reads the affinity
        self.tiger_depth = L
        if not self.prefix_rule or not cold_cap(self.config.epsilon, self.config.beam):
            return L
        ids, logp, _ = self._generate(history, dense=False)
        self.depth_recall, self.tiger_recall = self._depth_recall(self._items_of(ids), logp, history, targets,
                                                                  (self.weight, PLACEMENTS["tiger"]))
        self.depth = choose_depth(self.depth_recall["cold"], self.depth_recall["all"])
        self.tiger_depth = choose_depth(self.tiger_recall["cold"], self.tiger_recall["all"])
        logger.info("prefix rule: validation Recall@10 by depth %s; depth %d; at TIGER's placement %s; depth %d",
                    self.depth_recall, self.depth, self.tiger_recall, self.tiger_depth)
        return self.depth

    def _depth_recall(self, items: np.ndarray, logp: np.ndarray, history: np.ndarray, targets: np.ndarray,
                      weights: tuple[float, ...]) -> list[dict[str, dict[int, float]]]:
        """Per placement weight: Recall@10 of the prefix rule at each depth 1..L over the cold targets and over all
        (``{"cold": {depth: r}, "all": {depth: r}}``), from the beam's items (U, W) and log-probabilities."""
        cold = self.cold[targets]
        by_depth = {d: self._prefix_ranks(items, logp, history, targets, d, weights)
                    for d in range(1, self.tokens.prefix_length + 1)}
        return [{name: {d: recall_ndcg(found[i][mask], (10,))["recall@10"] or 0.0 for d, found in by_depth.items()}
                 for name, mask in (("cold", cold), ("all", np.ones_like(cold)))} for i in range(len(weights))]

    def _prefix_ranks(self, items: np.ndarray, logp: np.ndarray, history: np.ndarray, targets: np.ndarray,
                      depth: int, weights: tuple[float, ...]) -> list[np.ndarray]:
        """The prefix rule's item ranks (U,) at ``depth`` codes, one per placement weight: cold items by affinity
        (once a depth is chosen), chosen once and placed by each weight (:func:`.cold.placed_ranks`)."""
        prefix = row_keys(self.tokens.tokens[:, :depth], list(self.tokens.sizes[:depth]))
        query = recent_query(self.unit, history) if self.unit is not None and self.depth is not None else None
        return placed_ranks(items, prefix, self.cold, targets, cold_cap(self.config.epsilon, self.config.beam),
                            query, self.unit, logp, weights)

    def _generate(self, history: np.ndarray, dense: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The beam's IDs (U, W, G) and log-probabilities (U, W), and the dense query (U, E) (None unless ``dense``
        and the model has the projection), from one forward pass of each history."""
        device = resolve_device(self.config.device)
        with torch_threads(self.config.num_threads):
            return generate(self.model, self.masks, history, self.config.beam, EVAL_BATCH[device.type],
                            dense and self.unit is not None)

    def _items_of(self, ids: np.ndarray) -> np.ndarray:
        """The item (U, W) of each generated full ID (U, W, G) (unique with dedup tokens); -1 for empty rows."""
        U, W, G = ids.shape
        order = np.argsort(self.groups.item_key, kind="stable")
        keys = row_keys(np.maximum(ids, 0).reshape(-1, G), list(self.tokens.sizes[:G])).reshape(U, W)
        at = np.clip(np.searchsorted(self.groups.item_key[order], keys), 0, len(order) - 1)
        return np.where((ids < 0).any(2), -1, order[at])


def _batch(config: RetrievalConfig, tokens: ItemTokens, slots: int, windows: int, device: torch.device) -> int:
    if config.batch_size is not None:
        return config.batch_size
    per_window = slots * sum(tokens.sizes[:tokens.generated]) * 4 * 3  # logits, softmax, gradient
    return int(max(8, min(256, windows // MIN_STEPS_PER_EPOCH, logit_bytes(device) // per_window)))


def logit_bytes(device: torch.device) -> int:
    """Bytes one training step's logits may take on ``device`` (:data:`GPU_LOGIT_BYTES`, :data:`LOGIT_BYTES`)."""
    if device.type == "cuda":
        return min(GPU_LOGIT_BYTES, torch.cuda.get_device_properties(device).total_memory // 4)
    return LOGIT_BYTES


def epoch_budget(config: RetrievalConfig, windows: float) -> int:
    """The epochs a model of ``windows`` training windows an epoch (on average: :meth:`Windows.mean_count`) may
    train: ``max_epochs``, fewer where that would read more than ``max_windows`` windows (at least 1)."""
    if config.max_windows is None or not windows:
        return config.max_epochs
    return min(config.max_epochs, max(1, int(config.max_windows // windows)))


def fit_retriever(seqs: Sequences, tokens: ItemTokens, config: RetrievalConfig,
                  embeddings: np.ndarray | None = None) -> Retriever:
    """Train on the training windows, early-stopped on validation Recall@10; the best epoch's weights.

    Early stopping reads ``config.valid_users`` sampled validation users; the prefix rule's depth
    (:meth:`Retriever.choose_depth`) is chosen once on every validation user (at most :data:`DEPTH_USERS`, a
    seeded sample beyond), since a small sample holds few cold targets (the 5M-row planted log: 4,254 of 99,957
    users, so about 210 in a sample of 5,000, where every depth reached none).

    ``embeddings`` (M, E): the items' vectors; with generated dedup tokens the model also learns the dense
    rule's projection (:mod:`.dense`). Every draw comes from a named child of ``config.seed``; torch's global
    RNG is forked, so the caller's random state is the same afterwards.
    """
    retriever = untrained_retriever(seqs, tokens, config, embeddings)
    model, length, device = retriever.model, retriever.length, retriever.model.table.device
    windows = Windows(seqs, length + 1, config.crop, device)
    rng = np.random.default_rng(child_seed(config.seed, "valid users"))
    order = rng.permutation(seqs.n_users)
    sample = np.sort(order[:config.valid_users])
    valid_histories = histories(seqs, "valid", length)
    valid = valid_histories[sample], seqs.valid[sample]
    with torch_threads(config.num_threads), forked_rng(device, child_seed(config.seed, "retrieval dropout")):
        best_state = _fit(retriever, windows, valid, cpu_generator(child_seed(config.seed, "retrieval batches")))
    model.load_state_dict(best_state)
    depth_users = np.sort(order[:DEPTH_USERS])  # one beam pass; early stopping's sample is part of it
    retriever.choose_depth(valid_histories[depth_users], seqs.valid[depth_users])
    return retriever


def untrained_retriever(seqs: Sequences, tokens: ItemTokens, config: RetrievalConfig,
                        embeddings: np.ndarray | None = None) -> Retriever:
    """The model initialised from ``config.seed``'s child "retrieval init" (torch's global RNG forked), on
    ``config.device``, with the trie of the IDs it may generate, the ID groups and the cold items.

    ``embeddings`` (M, E): the items' vectors; with generated dedup tokens the model gets the dense rule's
    projection. Raises ValueError for a cold rule the tokens or embeddings cannot give.
    """
    device = resolve_device(config.device)
    check_precision(config.precision, what="retrieval precision")
    length = history_length(seqs, config.history)
    dense = embeddings is not None and tokens.prefix_length < tokens.generated
    unit = unit_rows(embeddings) if dense else None
    if config.cold not in COLD_RULES or (config.cold == "dense" and not dense):
        raise ValueError(f"Expected cold in {COLD_RULES} ('dense' with embeddings and generated dedup tokens), "
                         f"got {config.cold!r}")
    with forked_rng(torch.device("cpu"), child_seed(config.seed, "retrieval init")):  # built on the host
        model = NextItemModel(tokens, length + 1, config.model, unit, config.dense_weight).to(device)
    popularity = seqs.popularity()
    beamed = popularity > 0 if tokens.prefix_length < tokens.generated else np.ones(len(popularity), bool)
    trie = PrefixTrie.build(tokens.ids[beamed], list(tokens.sizes[:tokens.generated]))
    return Retriever(model, TrieMasks(trie, device), tokens, IdGroups.build(tokens.id_keys(), popularity),
                     length, config, popularity == 0, unit, cold_share(popularity == 0, seqs.valid))


class Windows:
    """The training windows of each epoch (:func:`training_windows`) on the device; fixed cuts are cut once.

    A shifted cut holds more windows than the fixed one (a user's sequence can straddle one more cut: on a
    500,000-row planted log, 10,362 windows at shift 0 and 20,265 at the largest shift), so the epochs' shifts
    are drawn up front (:meth:`shifts`) and the learning-rate schedule spans the steps they will take, and the
    window budget (:func:`epoch_budget`) reads the mean count over the shifts a random crop draws
    (:meth:`mean_count`).
    """

    def __init__(self, seqs: Sequences, slots: int, crop: str, device: torch.device) -> None:
        if crop not in CROPS:
            raise ValueError(f"Expected crop in {CROPS}, got {crop!r}")
        self.seqs, self.slots, self.crop, self.device = seqs, slots, crop, device
        self.fixed = torch.as_tensor(training_windows(seqs, slots), device=device)

    def __len__(self) -> int:
        return len(self.fixed)

    @property
    def shifted(self) -> bool:
        """Whether each epoch draws its cut (``crop="random"`` and room for a shift)."""
        return self.crop == "random" and self.slots >= 3

    def count(self, shift: int) -> int:
        """The windows of the cut at ``shift``."""
        return int(_window_counts(self.seqs, self.slots, shift).sum())

    def mean_count(self) -> float:
        """The mean number of windows of an epoch: the fixed cut's, or the mean over the shifts 0 .. S - 2."""
        if not self.shifted:
            return float(len(self.fixed))
        return float(np.mean([self.count(shift) for shift in range(self.slots - 1)]))

    def shifts(self, epochs: int, generator: torch.Generator) -> list[int]:
        """Each epoch's shift (0 for fixed cuts), drawn from ``generator`` before any epoch."""
        if not self.shifted:
            return [0] * epochs
        return [int(torch.randint(0, self.slots - 1, (1,), generator=generator)) for _ in range(epochs)]

    def epoch(self, shift: int) -> torch.Tensor:
        """LongTensor (R, S) of item rows: the cut at ``shift`` (0: the fixed cut)."""
        if not shift:
            return self.fixed
        return torch.as_tensor(training_windows(self.seqs, self.slots, shift), device=self.device)


def _fit(retriever: Retriever, windows: Windows, valid: tuple[np.ndarray, np.ndarray],
         generator: torch.Generator) -> dict:
    """The epochs with early stopping; the best epoch's state dict."""
    model, config = retriever.model, retriever.config
    batch = _batch(config, retriever.tokens, retriever.length + 1, len(windows), windows.device)
    mean_count = windows.mean_count()
    epochs = epoch_budget(config, mean_count)
    if epochs < config.max_epochs:
        logger.info("%d epochs of %.0f windows on average (at most %d windows per model; max_epochs %d)", epochs,
                    mean_count, config.max_windows, config.max_epochs)
    shifts = windows.shifts(epochs, generator)
    steps = [-(-windows.count(shift) // batch) for shift in shifts]
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, fused=windows.device.type in ("cuda", "cpu"))
    scheduler = learning_rates(optimizer, config.schedule, sum(steps))
    best, best_state, stale = (-1.0, -1.0), None, 0
    for epoch, shift in enumerate(shifts):
        start = time.perf_counter()
        with matmul_precision(config.precision, windows.device):
            loss = _epoch(model, optimizer, scheduler, windows.epoch(shift), batch, generator)
        trained = time.perf_counter()
        metrics = recall_ndcg(retriever.ranks(*valid)[0], (10,))
        score = (metrics["recall@10"], metrics["ndcg@10"])  # NDCG breaks ties (a saturated recall)
        retriever.valid_recall.append(score[0])
        logger.info("epoch %d: loss %.4f, validation Recall@10 %.4f, NDCG@10 %.4f (training %.1f s, %d steps of "
                    "%d windows; validation %.1f s, %d users)", epoch + 1, loss, *score, trained - start,
                    steps[epoch], batch, time.perf_counter() - trained, len(valid[1]))
        if score > best:
            best, best_state, stale = score, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= config.patience:
                break
    return best_state


def learning_rates(optimizer: torch.optim.Optimizer, schedule: str, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The per-step rate factor of ``schedule`` over a budget of ``steps`` steps (constant: 1)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"Expected schedule in {SCHEDULES}, got {schedule!r}")
    warmup = max(1, int(WARMUP * steps))

    def factor(step: int) -> float:
        if schedule == "constant":
            return 1.0
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, steps - warmup))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _epoch(model: NextItemModel, optimizer: torch.optim.Optimizer, scheduler, windows: torch.Tensor, batch: int,
           generator: torch.Generator) -> float:
    """One pass in a random order (drawn on the host by ``generator``); the mean loss per target item (read once)."""
    model.train()
    order = torch.randperm(len(windows), generator=generator).to(windows.device)
    total = torch.zeros((), device=windows.device)
    count = torch.zeros((), device=windows.device, dtype=torch.int64)
    for i in range(0, len(order), batch):
        loss, n = model.loss(windows[order[i:i + batch]])
        optimizer.zero_grad(set_to_none=True)
        (loss / n.clamp(min=1)).backward()
        optimizer.step()
        scheduler.step()
        total += loss.detach()
        count += n
    return float(total / count.clamp(min=1)) if len(order) else math.nan
