"""The verbs ``fit`` and ``encode``: a tokenizer fitted on an embeddings file, and its codes.

Both talk to tokenizers through their shared interface only (capabilities are
class attributes of :class:`rqgmm.tokenizers.base.Tokenizer`).
"""

from __future__ import annotations

import argparse
import logging
import os

import numpy as np
import torch

from rqgmm.console import MAX_SEED, int_in
from rqgmm.errors import InputError
from rqgmm.files import formats as io
from rqgmm.files.modalities import fused
from rqgmm.files.paths import Output, check_outputs
from rqgmm.ids.codes import FORMATS, CodesTable, write_codes
from rqgmm.ids.reassign import collision_free
from rqgmm.ids.suffix import unique_suffix
from rqgmm.refit.align import align
from rqgmm.refit.lineage import check_compatible, fingerprint_of
from rqgmm.runtime.device import PRECISIONS, resolve_device
from rqgmm.runtime.parallel import is_writer, process_group
from rqgmm.runtime.source import RowSource, sample_of
from rqgmm.runtime.validation import as_matrix, check_dimension, checked_batches
from rqgmm.tokenizers.balance import METHODS as BALANCE_METHODS
from rqgmm.tokenizers.base import Tokenizer, load, methods, tokenizer_class

logger = logging.getLogger("rqgmm")

CODE_SUFFIXES = (".npy", ".parquet")


def codebook_sizes(text: str) -> int | list[int]:
    """An argparse type: K, or one K per level separated by commas."""
    parse = int_in(1)
    sizes = [parse(part) for part in text.split(",")]
    return sizes[0] if len(sizes) == 1 else sizes


EMBEDDING_HELP = ("parquet list column of the embeddings (default 'embedding'); repeat it for several modalities, "
                  "fused as each L2-normalised, then concatenated (as rqgmm evaluate does); recorded in the model")


def register(sub) -> None:
    """Add ``fit`` and ``encode`` to the verbs."""
    add_fit(sub)
    add_encode(sub)


def add_fit(sub) -> None:
    fit = sub.add_parser("fit", help="fit a tokenizer on embeddings and save the model directory")
    fit.add_argument("emb", help="embeddings: .npy (N x D float) or .parquet (item_id, embedding)")
    fit.add_argument("--method", default="rqgmm", help=f"one of: {', '.join(methods())} (default rqgmm)")
    fit.add_argument("--levels", type=int_in(1), default=None, help="number of code levels L (default 3; 1 for vqvae)")
    fit.add_argument("--codebook-size", type=codebook_sizes, default=256,
                     help="K, or one K per level separated by commas (default 256)")
    fit.add_argument("--seed", type=int_in(0, MAX_SEED), default=0, help="random seed (default 0)")
    fit.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda or cuda:1 (default cpu)")
    fit.add_argument("--max-iter", type=int_in(1), default=None,
                     help="iterations (EM/Lloyd/refinement) or epochs (VAEs) per level")
    fit.add_argument("--chunk-size", type=int_in(1), default=None,
                     help="rows per block in each pass over the data (rqgmm, rqkmeans, prqkmeans)")
    fit.add_argument("--embedding", action="append", default=None, metavar="COL",
                     help=EMBEDDING_HELP)
    fit.add_argument("--sample", type=int_in(1), default=None,
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
    fit.set_defaults(run=cmd_fit)


def add_encode(sub) -> None:
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
    enc.set_defaults(run=cmd_encode)


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
        check_takes(cls, "precision", "--precision")
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


def check_takes(cls: type[Tokenizer], param: str, flag: str) -> None:
    """Refuse ``flag`` unless the method ``cls`` has the constructor parameter ``param`` (naming those that do)."""
    if param not in cls._get_param_names():
        taking = ", ".join(m for m in methods() if param in tokenizer_class(m)._get_param_names())
        raise InputError(f"{flag} applies to {taking}, not {cls.method}; drop {flag}")


def _balance_kwargs(cls: type[Tokenizer], args: argparse.Namespace) -> dict:
    if args.balance is None:
        if args.max_cluster_size is not None:
            raise InputError("--max-cluster-size bounds balanced codes; add --balance greedy or --balance sinkhorn")
        return {}
    check_takes(cls, "balance", "--balance")
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


def read_valid_embeddings(path: str, n_features: int | None = None, scan: bool = True,
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


def model_columns(args: argparse.Namespace, tokenizer: Tokenizer) -> list[str] | None:
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
    _, X = read_valid_embeddings(args.emb, n_features=n_features, scan=not tokenizer.chunked,
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
    model_fingerprint = fingerprint_of(tokenizer)  # before --precision changes the config
    if args.precision is not None:
        check_takes(type(tokenizer), "precision", "--precision")
        tokenizer.set_params(precision=args.precision)
    if args.unique == "reassign" and not tokenizer.reconstructs:
        raise InputError(f"--unique reassign moves colliding items to the code that reconstructs them best; a "
                         f"{tokenizer.method} model does not reconstruct its input: use --unique suffix")
    columns = model_columns(args, tokenizer)
    if args.emb.endswith(".parquet") and args.unique != "reassign":
        item_ids, codes = _encode_parquet_batches(tokenizer, args.emb, columns)
    else:  # a memory map streams by itself; reassigning needs the colliding items' rows
        item_ids, X = read_valid_embeddings(args.emb, n_features=tokenizer.n_features_in_,
                                             scan=not tokenizer.chunked, columns=columns)
        codes = np.asarray(tokenizer.encode(X))
    if args.unique == "reassign":
        codes, suffix = collision_free(tokenizer, X, codes)
    else:
        suffix = unique_suffix(codes) if args.unique else None
    table = CodesTable(codes, item_ids, tokenizer.effective_codebook_sizes, tokenizer.method, suffix,
                       model_fingerprint)
    write_codes(args.out, table, args.format)
    if suffix is not None and args.unique == "suffix":
        logger.info("%d of %d items share their codes with an earlier item and got a suffix > 0",
                    int((suffix > 0).sum()), len(codes))
    logger.info("wrote %d x %d codes to %s (%s layout)", *codes.shape, args.out, args.format)


def _encode_parquet_batches(tokenizer: Tokenizer, path: str, columns: list[str] | None) -> tuple[np.ndarray, np.ndarray]:
    """Item ids (N,) and codes (N, L) of a parquet file encoded record batch by record batch.

    Only one batch of embeddings is in memory at a time; rows with NaN or Inf are
    refused over the whole file (:func:`rqgmm.runtime.validation.checked_batches`)
    before anything is written.
    """
    ids, codes = [], []
    batches = io.embedding_batches(path, tuple(_columns(columns)))
    for batch_ids, X in checked_batches(batches, tokenizer.n_features_in_, path):
        codes.append(np.asarray(tokenizer.encode(X)))
        ids.append(batch_ids)
    if not ids:
        raise InputError(f"{path} holds no rows; encode at least one item")
    return io.check_unique_ids(np.concatenate(ids), path), np.concatenate(codes)


def check_directory_exists(path: str, flag: str) -> None:
    """Refuse an output whose directory does not exist (a mistyped directory is not created)."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise InputError(f"{flag} {path}: directory {os.path.dirname(path)} does not exist; create it first or "
                         "write into an existing directory")
