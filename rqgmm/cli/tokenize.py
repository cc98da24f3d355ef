"""The verbs ``fit`` and ``encode``: a tokenizer fitted on an embeddings file, and its codes.

This module builds their parsers without importing torch; the work is in
:mod:`rqgmm.cli.tokenize_run`, imported when a verb runs. Both talk to
tokenizers through their shared interface only (capabilities are class
attributes of :class:`rqgmm.tokenizers.base.Tokenizer`).
"""

from __future__ import annotations

import argparse
import os

from rqgmm.cli.verbs import VERBS
from rqgmm.console import MAX_SEED, int_in
from rqgmm.errors import InputError
from rqgmm.runtime.torch_build import refuse_absent_device
from rqgmm.ids.names import FORMATS
from rqgmm.runtime.names import PRECISIONS
from rqgmm.tokenizers.names import BALANCE_METHODS, BUILTIN_METHODS

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
    fit = sub.add_parser("fit", help=VERBS["fit"].help)
    fit.add_argument("emb", help="embeddings: .npy (N x D float) or .parquet (item_id, embedding)")
    fit.add_argument("--method", default="rqgmm", help=f"one of: {', '.join(sorted(BUILTIN_METHODS))} (default rqgmm)")
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
    enc = sub.add_parser("encode", help=VERBS["encode"].help)
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


def cmd_fit(args: argparse.Namespace) -> None:
    refuse_absent_device(args.device)  # run_fit's first check, answered before torch loads
    from rqgmm.cli.tokenize_run import run_fit

    run_fit(args)


def cmd_encode(args: argparse.Namespace) -> None:
    from rqgmm.cli.tokenize_run import run_encode

    run_encode(args)


def check_directory_exists(path: str, flag: str) -> None:
    """Refuse an output whose directory does not exist (a mistyped directory is not created)."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise InputError(f"{flag} {path}: directory {os.path.dirname(path)} does not exist; create it first or "
                         "write into an existing directory")
