"""The ``rqgmm evaluate`` verb: options → checked inputs → the evaluation → results.json, report.md, plots.

``--out`` is the evaluation's working directory: each finished run is kept in
``OUT/runs`` as it finishes (see :mod:`.grid`), so the same command resumes a
killed grid; results.json, report.md and the plots are written at the end,
each file atomically. Under ``torchrun`` the runs are spread over the ranks,
each on its own device, and rank 0 writes the outputs.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

from rqgmm.ids.shape import describe as describe_shape, previous_default_note
from rqgmm.runtime.parallel import is_writer, process_group
from rqgmm.evaluate.retrieval_task import describe_retrieval, evaluate_tasks, with_other_task
from rqgmm.evaluate.config import EvaluateConfig, run_settings
from rqgmm.evaluate.grid import RecordStore, file_fingerprint
from rqgmm.evaluate.inputs import check_inputs, read_table
from rqgmm.evaluate.caveats import caveats
from rqgmm.evaluate.report import variant_costs, write_into
from rqgmm.evaluate.retrieval_report import retrieval_verdict
from rqgmm.evaluate.tables import ordered, select, setting_label
from rqgmm.evaluate.verdict import brief_lines, recommendation, short_note, sizes_note
from rqgmm.evaluate.run import SPLIT_RULE
from rqgmm.evaluate.stages import StageMeter, stage_words

logger = logging.getLogger(__name__)
#: The logger of the verdict's lines: shown under ``--quiet`` too.
VERDICT_LOGGER = "rqgmm.evaluate.verdict_lines"

#: How long a rank may wait for the slowest at the grid's gathers: a rank's share can outlast
#: another's by a few runs of hours each; a rank that dies ends the group sooner (torchrun stops the rest).
GATHER_TIMEOUT_S = 7 * 24 * 3600.0


def describe(config: EvaluateConfig, timed: bool, n_items: int) -> dict:
    """The run's settings as the report header shows them (the ID shape completed for ``n_items`` items)."""
    shape = "" if config.shape_given else f" ({describe_shape(n_items, config.levels, config.codebook_size)})"
    config = config.with_shape(n_items)
    return dict(split=SPLIT_RULE[timed], tokenize=config.tokenize + (" (each modality L2-normalised, then "
                "concatenated)" if config.tokenize == "fused" else " (one ID stack per embedding column)"),
                embedding=list(config.embedding), methods=list(config.methods),
                ids=_ids_words(config) + shape, backbones=list(config.backbones),
                variants=list(config.variants), seeds=config.seed_list, quick=config.quick,
                max_epochs=config.train.max_epochs, patience=config.train.patience,
                categorical=list(config.categorical), bag=list(config.bag), numeric=list(config.numeric))


def _ids_words(config: EvaluateConfig) -> str:
    """"2 levels x K=128"; a sweep: "shapes 2x64, 2x256"."""
    if config.sweep:
        return "shapes " + ", ".join(setting_label(*shape) for shape in config.shapes)
    return f"{config.levels} levels x K={config.codebook_size}"


def run_evaluate(args: argparse.Namespace, config: EvaluateConfig) -> None:
    """``rqgmm evaluate`` once its options (``config``) and paths are checked (:func:`rqgmm.cli.evaluate.cmd_evaluate`):
    the resume and input checks before any training; runs kept as they finish, outputs written at the end."""
    dataset = Path(args.interactions).stem
    settings = {k: v for k, v in run_settings(config).items() if k != "sample_users" or v < 1}  # older outputs resume
    store = RecordStore(args.out, dict(settings, dataset=dataset,
                                       inputs=[file_fingerprint(p) for p in (args.interactions, args.items)]))
    store.check(explain=None if config.shape_given else lambda theirs, differ: previous_default_note(
        theirs, differ, lambda: len(read_table(args.items, "items"))))
    with StageMeter() as meter:
        data = meter.run("read+encode", lambda: check_inputs(
            read_table(args.interactions, "interactions"), read_table(args.items, "items"), config,
            names=(args.interactions, args.items)))
        start = time.perf_counter()
        with process_group(config.device, timeout_s=GATHER_TIMEOUT_S) as device:
            config = replace(config, device=device, train=replace(config.train, device=device))
            records, seconds = evaluate_tasks(data, config, dataset, store, not args.quiet and sys.stderr.isatty())
            if not is_writer():
                return
        _write(args, config, data, dataset, records, seconds, start, meter)


def _write(args, config, data, dataset, records, seconds, start, meter: StageMeter) -> None:
    """results.json, report.md and the plots (rank 0), the report stage measured too; the verdict echoed."""
    meta = dict(command=getattr(args, "typed", None) or "rqgmm evaluate",
                dataset=dataset, datasets=[dataset], rows=data.rows,
                items=len(data.items), **({"sample": data.sample} if data.sample else {}), seconds=seconds,
                **describe_retrieval(config, describe(config, data.timed, len(data.item_ids))),
                elapsed_seconds=round(time.perf_counter() - start, 1), stages=meter.table())
    records = with_other_task(Path(args.out), records, config.task)
    written = meter.run("report", lambda: write_into(Path(args.out), records, meta))
    logger.info("stages: %s", stage_words(meter.table()))
    echo_verdict(records)
    logger.info("wrote %d files to %s in %.0f s; read %s", len(written), args.out, meta["elapsed_seconds"],
                Path(args.out) / "report.md")


def echo_verdict(records: list[dict]) -> None:
    """Each dataset's verdict in a few log lines and each warning in one, shown under ``--quiet`` too (the
    verdict is the command's answer: its logger keeps its own level, INFO, whatever the root's)."""
    said = logging.getLogger(VERDICT_LOGGER)
    said.setLevel(logging.INFO)
    for dataset in ordered(r.get("dataset") for r in records):
        in_data = select(records, dataset=dataset)
        comps = select(in_data, kind="comparison")
        if comps:
            said.info("%s: %s", dataset, recommendation(comps, variant_costs(in_data)))
            said.info("%s: verdict (%s; every slice in report.md):", dataset, short_note(comps))
            for line in brief_lines(comps):
                said.info("  %s", line)
            sizes = sizes_note(comps)
            if sizes:
                said.info("  %s", sizes)
        retrieval = retrieval_verdict(in_data)
        if retrieval:  # the retrieval task's answer, shown under --quiet too
            said.info("%s: retrieval verdict (%s):", dataset, retrieval[0].rstrip("."))
            for line in retrieval[1:]:
                said.info("  %s", line)
        for line in caveats(in_data):
            said.warning("%s: %s", dataset, line)
