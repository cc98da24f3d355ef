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
import importlib
import sys

from rqgmm.cli.verbs import VERBS
from rqgmm.console import Parser, os_error_message, setup_logging, typed_command
from rqgmm.errors import InputError


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser with one sub-command per verb (each sets ``run``, the function that does it).

    Given the command line ``argv``, only the module of the verb it names is imported and builds its
    parser; every other verb is a stub holding its name and help (enough for ``rqgmm --help``).
    Without ``argv``, every verb's parser is built.
    """
    parser = Parser(prog="rqgmm", description="Semantic IDs from item embeddings with RQ-GMM and baselines.")
    sub = parser.add_subparsers(dest="verb", required=True, parser_class=Parser)
    every = {verb.module for verb in VERBS.values()}
    wanted = every if argv is None else {VERBS[a].module for a in argv[:1] if a in VERBS}
    registered: set[str] = set()
    for name, (module, help_text) in VERBS.items():
        if module not in wanted:
            sub.add_parser(name, help=help_text)
        elif module not in registered:  # the module adds all its verbs at once
            importlib.import_module(module).register(sub)
            registered.add(module)
    return parser


def _gpu_out_of_memory(exc: BaseException) -> bool:
    """torch.cuda.OutOfMemoryError, recognised without importing torch (a verb that ran out of GPU memory
    imported it already)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    try:
        argv = sys.argv[1:] if argv is None else argv
        args = build_parser(argv).parse_args(argv)
        args.typed = typed_command(argv)
        setup_logging(getattr(args, "quiet", False))
        args.run(args)
    except InputError as exc:
        print(f"rqgmm: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"rqgmm: error: {os_error_message(exc)}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # torch.cuda.OutOfMemoryError is one
        if not _gpu_out_of_memory(exc):
            raise
        print("rqgmm: error: the GPU ran out of memory; pass a smaller --chunk-size or use --device cpu",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rqgmm: interrupted", file=sys.stderr)
        return 130
    return 0
