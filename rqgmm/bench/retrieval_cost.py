"""Where a retrieval validation or test pass spends its time: each part of ``Retriever.rule_ranks``, timed.

    python -m rqgmm.data.planted --rows 5000000 --items 200000 --users 100000 --sequential 0.8 --sessions 4 \\
        --fresh 0.2 --out pl5m
    python -m rqgmm.bench.retrieval_cost pl5m --users 2000                  # the CPU
    python -m rqgmm.bench.retrieval_cost pl5m --users 20000 --device cuda   # a GPU host

Reads a planted log's two files (``embedding`` column), builds the leave-one-out sequences and an untrained
retriever the way :func:`rqgmm.retrieval.train.fit_retriever` does (the FULL model size, random 3 x 256 codes
and a generated dedup token: the cost of a pass does not depend on the codes' quality), then times on the
validation histories of ``--users`` sampled users: the beam, the beam with the dense query (one forward pass of
each history feeds both), the ID-level ranks, the items of the generated IDs, the prefix rule (all codes, as early
stopping reads it; one code with content affinity, the most candidates) and the dense rule; then one whole
``Retriever.ranks`` (what each epoch's validation runs) and one ``Retriever.rule_ranks`` (the test pass). Prints
seconds and seconds per 1,000 users.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

from rqgmm.console import Parser, exit_status, int_in, setup_logging

logger = logging.getLogger("rqgmm.bench.retrieval_cost")  # by name: under "rqgmm" also when run as __main__


def log_of(root: Path):
    """The leave-one-out sequences of the planted log under ``root`` and its items' embeddings (M, E) float32."""
    import numpy as np
    import pyarrow.parquet as pq

    from rqgmm.retrieval.sequences import build_sequences

    log = pq.read_table(root / "interactions.parquet", columns=["user_id", "item_id", "label", "timestamp"])
    items = pq.read_table(root / "items.parquet", columns=["item_id", "embedding"])
    item_ids = items.column("item_id").to_numpy()
    vectors = np.stack(items.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float32)
    seqs = build_sequences(log.column("user_id").to_numpy(), np.searchsorted(item_ids, log.column("item_id").to_numpy()),
                           log.column("label").to_numpy(), log.column("timestamp").to_numpy(), len(item_ids))
    return seqs, vectors


def retriever_of(root: Path, device: str):
    """The leave-one-out sequences of the log under ``root`` and an untrained FULL-size retriever on ``device``."""
    import numpy as np

    from rqgmm.retrieval.train import FULL, untrained_retriever
    from rqgmm.retrieval.vocab import ItemTokens

    seqs, vectors = log_of(root)
    tokens = ItemTokens.semantic(np.random.default_rng(0).integers(0, 256, (len(vectors), 3)), [256] * 3)
    retriever = untrained_retriever(seqs, tokens, replace(FULL, device=device), vectors)
    return seqs, retriever


def timings(seqs, retriever, users: int) -> dict[str, float]:
    """Seconds of each part of one pass over the validation histories of ``users`` sampled users."""
    import numpy as np

    from rqgmm.retrieval.cold import cold_cap
    from rqgmm.retrieval.dense import dense_rule_ranks
    from rqgmm.retrieval.metrics import ranks
    from rqgmm.retrieval.train import histories

    sample = np.sort(np.random.default_rng(0).permutation(seqs.n_users)[:users])
    history, targets = histories(seqs, "valid", retriever.length)[sample], seqs.valid[sample]
    r, found = retriever, {}

    def timed(name, work):
        start = time.perf_counter()
        out = work()
        found[name] = time.perf_counter() - start
        return out

    ids, logp, _ = timed("beam search", lambda: r._generate(history, dense=False))
    query = timed("beam search + dense query", lambda: r._generate(history, dense=True))[2]
    sizes = list(r.tokens.sizes[:r.tokens.generated])
    timed("ID-level ranks", lambda: ranks(ids, sizes, targets, r.groups))
    items = timed("items of the IDs", lambda: r._items_of(ids))
    timed("prefix rule, all codes", lambda: r._prefix_ranks(items, logp, history, targets, r.tokens.prefix_length,
                                                            (0.0,)))
    r.depth = 1
    timed("prefix rule, 1 code + affinity", lambda: r._prefix_ranks(items, logp, history, targets, 1,
                                                                    (float(np.log(r.share)),)))
    timed("prefix rule, 1 code + affinity, 2 placements",
          lambda: r._prefix_ranks(items, logp, history, targets, 1, (float(np.log(r.share)), 0.0)))
    r.depth = None
    timed("dense rule", lambda: dense_rule_ranks(items, logp, query, r.unit, r.cold, targets,
                                                 cold_cap(r.config.epsilon, r.config.beam),
                                                 float(r.model.scale.detach()), r.share, r.model.table.device))
    timed("Retriever.ranks (a validation)", lambda: r.ranks(history, targets))
    timed("Retriever.rule_ranks (a test pass)", lambda: r.rule_ranks(history, targets))
    return found


def main(argv: list[str] | None = None) -> int:
    """The exit status: 0, or 2 with one line."""
    parser = Parser(prog="python -m rqgmm.bench.retrieval_cost", description=__doc__.splitlines()[0])
    parser.add_argument("data", help="a planted log's directory (interactions.parquet, items.parquet)")
    parser.add_argument("--users", type=int_in(1), default=2000, help="validation users timed (default 2000)")
    parser.add_argument("--device", default="cpu")

    def run() -> None:
        args = parser.parse_args(argv)
        setup_logging(False)
        seqs, retriever = retriever_of(Path(args.data), args.device)
        users = min(args.users, seqs.n_users)
        logger.info("%d users, %d cold items, H %d, device %s; %d users timed", seqs.n_users,
                    int(retriever.cold.sum()), retriever.length, retriever.model.table.device, users)
        for name, seconds in timings(seqs, retriever, users).items():
            logger.info("%-36s %8.3f s %8.3f s per 1,000 users", name, seconds, 1000 * seconds / users)

    return exit_status(run)


if __name__ == "__main__":
    sys.exit(main())
