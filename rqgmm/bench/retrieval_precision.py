"""The retrieval models' training at each matrix-product precision, side by side in one run.

    python -m rqgmm.data.planted --rows 5000000 --items 200000 --users 100000 --sequential 0.8 --sessions 4 \\
        --fresh 0.2 --out pl5m
    python -m rqgmm.bench.retrieval_precision pl5m --device cuda

Trains the FULL-size models of a planted log (:func:`rqgmm.bench.retrieval_cost.log_of`'s sequences and
embeddings) for ``--epochs`` epochs with :func:`rqgmm.retrieval.train.fit_retriever`, from the same seed at each
precision of :data:`rqgmm.runtime.names.PRECISIONS` (``RetrievalConfig.precision``): a semantic-ID model (random
3 x 256 codes and a generated dedup token: the cost of a step does not depend on the codes' quality) and the
item-ID model (one 200,000-way softmax on the 5M-row log). Prints, per model and precision, the seconds of the
whole fit (training, validation, the depth choice), the last epoch's validation Recall@10 and the speed-up over
float32. Validation (generation) computes in float32 at every precision, so the recalls compare the training.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

from rqgmm.console import Parser, exit_status, int_in, setup_logging

logger = logging.getLogger("rqgmm.bench.retrieval_precision")  # by name: under "rqgmm" also when run as __main__


def fit_seconds(seqs, tokens, vectors, config) -> tuple[float, float]:
    """Seconds of one :func:`fit_retriever` at ``config`` and its last epoch's validation Recall@10."""
    import torch

    from rqgmm.retrieval.train import fit_retriever

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    retriever = fit_retriever(seqs, tokens, config, vectors)
    return time.perf_counter() - start, retriever.valid_recall[-1]


def warm_up(seqs, tokens, vectors, config) -> None:
    """One training step of an untrained model at each precision (the kernels' first loads stay out of the
    timings)."""
    from rqgmm.retrieval.train import Windows, untrained_retriever
    from rqgmm.runtime.device import matmul_precision
    from rqgmm.runtime.names import PRECISIONS

    model = untrained_retriever(seqs, tokens, config, vectors).model
    windows = Windows(seqs, model.slots, "fixed", model.table.device).fixed[:64]
    for precision in PRECISIONS:
        with matmul_precision(precision, windows.device):
            loss, count = model.loss(windows)
            (loss / count.clamp(min=1)).backward()


def main(argv: list[str] | None = None) -> int:
    """The exit status: 0, or 2 with one line."""
    parser = Parser(prog="python -m rqgmm.bench.retrieval_precision", description=__doc__.splitlines()[0])
    parser.add_argument("data", help="a planted log's directory (interactions.parquet, items.parquet)")
    parser.add_argument("--epochs", type=int_in(1, 30), default=1, help="epochs each model trains (default 1)")
    parser.add_argument("--device", default="cuda", help="where the models train (default cuda)")

    def run() -> None:
        args = parser.parse_args(argv)
        setup_logging(False)
        import numpy as np

        from rqgmm.bench.retrieval_cost import log_of
        from rqgmm.retrieval.train import FULL
        from rqgmm.retrieval.vocab import ItemTokens
        from rqgmm.runtime.device import resolve_device
        from rqgmm.runtime.names import PRECISIONS

        device = resolve_device(args.device)
        seqs, vectors = log_of(Path(args.data))
        n_items = len(vectors)
        models = {"semantic IDs (random 3 x 256 + dedup)":
                  ItemTokens.semantic(np.random.default_rng(0).integers(0, 256, (n_items, 3)), [256] * 3),
                  f"item IDs ({n_items:,}-way softmax)": ItemTokens.item_ids(n_items)}
        config = replace(FULL, device=str(device), max_epochs=args.epochs, max_windows=None)
        logger.info("%d users, %d items, %d epoch(s) each, on %s", seqs.n_users, n_items, args.epochs,
                    _device_name(device))
        for name, tokens in models.items():
            warm_up(seqs, tokens, vectors, config)
            found = {p: fit_seconds(seqs, tokens, vectors, replace(config, precision=p)) for p in PRECISIONS}
            for precision, (seconds, recall) in found.items():
                logger.info("%-40s %-4s %7.1f s  validation Recall@10 %.4f  fp32 / %s: %.2fx", name, precision,
                            seconds, recall, precision, found["fp32"][0] / seconds)

    return exit_status(run)


def _device_name(device) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)


if __name__ == "__main__":
    sys.exit(main())
