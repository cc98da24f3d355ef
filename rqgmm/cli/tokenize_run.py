"""The work of ``fit`` and ``encode`` (their parsers are :mod:`rqgmm.cli.tokenize`, which imports this when they run)."""

from __future__ import annotations

import argparse
import logging

import numpy as np
import torch

from rqgmm.cli.tokenize import CODE_SUFFIXES
from rqgmm.errors import InputError
from rqgmm.files import formats as io
from rqgmm.files.modalities import fused
from rqgmm.files.paths import Output, check_outputs
from rqgmm.ids.codes import CodesTable, write_codes
from rqgmm.ids.reassign import collision_free
from rqgmm.ids.suffix import unique_suffix
from rqgmm.refit.align import align
from rqgmm.refit.lineage import check_compatible, fingerprint_of
from rqgmm.runtime.device import resolve_device
from rqgmm.runtime.parallel import is_writer, process_group
from rqgmm.runtime.source import RowSource, sample_of
from rqgmm.runtime.validation import as_matrix, check_dimension, checked_batches
from rqgmm.tokenizers.base import Tokenizer, load, methods, tokenizer_class

logger = logging.getLogger("rqgmm")


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


def run_fit(args: argparse.Namespace) -> None:
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


def run_encode(args: argparse.Namespace) -> None:
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
