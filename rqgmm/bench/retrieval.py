"""A MovieLens dataset as the two parquet files ``rqgmm evaluate`` reads, for the retrieval benchmarks.

    python -m rqgmm.bench.retrieval --dataset movielens-small --out ml-small/
    rqgmm evaluate ml-small/interactions.parquet --items ml-small/items.parquet --task retrieval --quick --out r/

Writes ``interactions.parquet`` (user_id, item_id, label = rating >= 4,
timestamp) and ``items.parquet`` (item_id, embedding: the item text embedded
as ``rqgmm benchmark`` does, cached under ~/.cache/rqgmm), each atomically.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from rqgmm.files.atomic import atomic_output
from rqgmm.data import DATASETS
from rqgmm.console import Parser, exit_status, setup_logging
from rqgmm.errors import InputError
from rqgmm.files.paths import Output, check_outputs

logger = logging.getLogger("rqgmm.bench.retrieval")


def export(dataset: str, embedder: str, out: Path) -> tuple[Path, Path]:
    """Write ``out/interactions.parquet`` and ``out/items.parquet`` of one MovieLens dataset."""
    from rqgmm.evaluate.study import movielens_tables  # heavy imports: only here

    if dataset not in DATASETS:
        raise InputError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    paths = out / "interactions.parquet", out / "items.parquet"
    check_outputs([], [Output(p, "--out", "file") for p in paths])
    rows, items, _ = movielens_tables(dataset, embedder, None)
    tables = (pa.Table.from_pandas(rows[["user_id", "item_id", "label", "timestamp"]], preserve_index=False),
              pa.Table.from_pandas(items[["item_id", "embedding"]], preserve_index=False))
    out.mkdir(parents=True, exist_ok=True)
    for path, table in zip(paths, tables):
        with atomic_output(path) as tmp:
            pq.write_table(table, tmp)
    logger.info("wrote %d rows and %d items to %s", len(rows), len(items), out)
    return paths


def main(argv: list[str] | None = None) -> int:
    """The exit status: 0, or 2 with one line on bad arguments."""
    parser = Parser(prog="python -m rqgmm.bench.retrieval", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="movielens-small", help=f"one of {', '.join(DATASETS)}")
    parser.add_argument("--embedder", default="minilm", help="minilm (default), mpnet or hashing-<dim>")
    parser.add_argument("--out", required=True, help="directory for interactions.parquet and items.parquet")

    def run() -> None:
        args = parser.parse_args(argv)  # a bad argument: one line, exit 2
        setup_logging(False)
        export(args.dataset, args.embedder, Path(args.out))

    return exit_status(run)


if __name__ == "__main__":
    sys.exit(main())
