"""The retrieval model's training step, eager against replayed from a CUDA graph, side by side in one run.

    python -m rqgmm.data.planted --rows 5000000 --items 200000 --users 100000 --sequential 0.8 --sessions 4 \\
        --fresh 0.2 --out pl5m
    python -m rqgmm.bench.retrieval_step pl5m --device cuda

Builds the FULL-size retriever of :mod:`rqgmm.bench.retrieval_cost` (random 3 x 256 codes and a generated dedup
token, the dense projection), its training windows and batch, then runs ``--steps`` steps from the same
initial weights on the same batches twice: eagerly and with the step captured into a CUDA graph
(:class:`rqgmm.retrieval.step.TrainStep`). Prints milliseconds per step and their ratio. Then checks that the
graph computes the eager step: the same model without dropout and without the dense loss (no random draws),
``--steps`` steps each way, the largest parameter difference and both mean losses.
"""

from __future__ import annotations

import copy
import logging
import sys
import time
from pathlib import Path

from rqgmm.console import Parser, exit_status, int_in, setup_logging

logger = logging.getLogger("rqgmm.bench.retrieval_step")  # by name: under "rqgmm" also when run as __main__


def run_steps(model, windows, batch: int, steps: int, graph: bool) -> tuple[float, float]:
    """Seconds per step of ``steps`` steps of ``model`` (trained in place) on consecutive batches, and the mean loss."""
    import torch

    from rqgmm.retrieval.step import TrainStep, rate_factor

    step = TrainStep(model, 2e-3, rate_factor("cosine", steps), batch, graph)
    model.train()
    sync = torch.cuda.synchronize if windows.device.type == "cuda" else (lambda: None)
    started = None
    for i in range(steps):
        if i == 5:  # after the warm-up and the capture
            sync()
            started = time.perf_counter()
        start = (i * batch) % max(1, len(windows) - batch)
        step(windows[start:start + batch])
    sync()
    return (time.perf_counter() - started) / max(1, steps - 5), step.epoch_loss()


def main(argv: list[str] | None = None) -> int:
    """The exit status: 0, or 2 with one line."""
    parser = Parser(prog="python -m rqgmm.bench.retrieval_step", description=__doc__.split("\n\n")[0])
    parser.add_argument("log", type=Path, help="a planted log's directory (interactions.parquet, items.parquet)")
    parser.add_argument("--steps", type=int_in(10, 100_000), default=200, help="steps each way (default 200)")
    parser.add_argument("--device", default="cuda", help="a CUDA device (default cuda)")

    def run() -> None:
        args = parser.parse_args(argv)
        setup_logging(False)
        import torch

        from rqgmm.bench.retrieval_cost import retriever_of
        from rqgmm.retrieval.model import ModelConfig, NextItemModel
        from rqgmm.retrieval.train import _batch, training_windows
        from rqgmm.runtime.device import resolve_device

        device = resolve_device(args.device)
        seqs, retriever = retriever_of(args.log, str(device))
        slots = retriever.length + 1
        windows = torch.as_tensor(training_windows(seqs, slots), device=device)
        batch = _batch(retriever.config, retriever.tokens, slots, len(windows), device)
        logger.info("%d windows of %d slots, %d windows a step, on %s", len(windows), slots, batch,
                    torch.cuda.get_device_name(device) if device.type == "cuda" else f"{device} (no CUDA graph "
                    "off a CUDA device: both runs eager)")
        start = copy.deepcopy(retriever.model.state_dict())
        seconds = {}
        for graph in (False, True):
            retriever.model.load_state_dict(start)
            torch.manual_seed(0)
            seconds[graph], loss = run_steps(retriever.model, windows, batch, args.steps, graph)
            logger.info("%s: %.2f ms a step, mean loss %.4f", "CUDA graph" if graph else "eager",
                        1e3 * seconds[graph], loss)
        logger.info("eager / CUDA graph: %.2fx", seconds[False] / seconds[True])
        plain = ModelConfig(dim=128, layers=2, heads=4, dropout=0.0)
        models, losses = [], []
        for graph in (False, True):
            torch.manual_seed(0)
            model = NextItemModel(retriever.tokens, slots, plain).to(device)
            losses.append(run_steps(model, windows, batch, args.steps, graph)[1])
            models.append(model)
        with torch.no_grad():
            gap = max(float((a - b).abs().max()) for a, b in zip(models[0].parameters(), models[1].parameters()))
        logger.info("no dropout, no dense loss, %d steps: largest parameter difference %.3g; mean losses %.6f "
                    "(eager) and %.6f (graph)", args.steps, gap, *losses)

    return exit_status(run)


if __name__ == "__main__":
    sys.exit(main())
