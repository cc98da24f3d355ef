"""The ``rqgmm`` command: the parser of every verb, and ``main`` with its exit statuses.

Exit status: 0 on success; 2 on bad input or usage, with one line on stderr that
says what was wrong and how to fix it, nothing written and every input untouched;
1 on an internal error (a bug: please report it).

Every verb runs in two phases. It checks every option value, resolves the
device, and checks every output path against every input (:mod:`rqgmm.files.paths`),
before any data is read; only then does the work start.
"""

from __future__ import annotations

import argparse
import sys

import torch

from rqgmm.cli import embed, evaluate, report, store, tokenize
from rqgmm.console import Parser, os_error_message, setup_logging, typed_command
from rqgmm.errors import InputError

# each module adds its verbs, in the order ``rqgmm --help`` lists them
VERB_MODULES = (tokenize, report, evaluate, store, embed)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per verb (each sets ``run``, the function that does it)."""
    parser = Parser(prog="rqgmm", description="Semantic IDs from item embeddings with RQ-GMM and baselines.")
    sub = parser.add_subparsers(dest="verb", required=True, parser_class=Parser)
    for module in VERB_MODULES:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        args.typed = typed_command(sys.argv[1:] if argv is None else argv)
        setup_logging(getattr(args, "quiet", False))
        args.run(args)
    except InputError as exc:
        print(f"rqgmm: error: {exc}", file=sys.stderr)
        return 2
    except torch.cuda.OutOfMemoryError:
        print("rqgmm: error: the GPU ran out of memory; pass a smaller --chunk-size or use --device cpu",
              file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"rqgmm: error: {os_error_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rqgmm: interrupted", file=sys.stderr)
        return 130
    return 0
