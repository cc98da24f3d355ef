"""The verbs ``evaluate`` (what semantic IDs are worth on the user's log) and ``benchmark`` (the same on MovieLens).

The study's imports (pandas, matplotlib, the CTR stack) load only when a verb runs, and ``evaluate``'s
options (flags and TOML) and paths are checked before they load: a refused value answers at once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from rqgmm.console import int_in
from rqgmm.errors import InputError
from rqgmm.runtime.torch_build import refuse_absent_device
from rqgmm.evaluate.names import (BACKBONE_NAMES, DEFAULTS, MARKER, QUICK_MAX_EPOCHS, QUICK_SEEDS, TASKS, TOKENIZE,
                                  VARIANTS)
from rqgmm.files.paths import Output, check_outputs


#: The help's word for the default ID shape (rqgmm.ids.shape.default_shape).
SHAPE_DEFAULT = "from the number of items: K=256 from 4,096 items, the fewest levels giving 16 IDs per item"


def register(sub) -> None:
    """Add ``benchmark`` and ``evaluate`` to the verbs."""
    add_benchmark(sub)
    add_evaluate(sub)


def add_benchmark(sub) -> None:
    bench = sub.add_parser("benchmark", help="run the CTR study on real data (tables, plots)")
    bench.add_argument("--dataset", default="movielens-100k",
                       help="movielens-100k (default), movielens-small, or all")
    bench.add_argument("--out", default="results", help="output directory (default ./results)")
    bench.add_argument("--quick", action="store_true", help="FNN only, one seed, at most 4 epochs (every variant runs)")
    bench.add_argument("--device", default="cpu", help="torch device (default cpu)")
    bench.add_argument("--seeds", type=int_in(1), default=None, help="number of seeds (default 3, or 1 with --quick)")
    bench.add_argument("--embedder", default="minilm", help="minilm (384-d, default), mpnet (768-d) or hashing-<dim>")
    bench.add_argument("--max-items", type=int_in(1), default=None, help="subsample this many items (for smoke runs)")
    bench.add_argument("--quiet", action="store_true")
    bench.set_defaults(run=cmd_benchmark)


def cmd_benchmark(args: argparse.Namespace) -> None:
    """Every option and ``--out`` checked, ``--out`` made (so a place the system will not write to is refused
    now, not after the study), then the study; a refused study leaves no ``--out`` it made."""
    check_outputs([], [Output(args.out, "--out", "directory", marker="results.json")])
    refuse_absent_device(args.device)
    from rqgmm.data.embedders import get_embedder  # no model loads until it embeds
    from rqgmm.runtime.device import resolve_device

    resolve_device(args.device, what="--device")
    get_embedder(args.embedder, what="--embedder")
    from rqgmm.evaluate.study import DATASETS, run_benchmark  # the study's imports are heavy: load them only here

    if args.dataset != "all" and args.dataset not in DATASETS:
        raise InputError(f"unknown dataset {args.dataset!r}; choose one of {', '.join(DATASETS)} or all")
    with made_directory(Path(args.out)):
        run_benchmark(args)


@contextlib.contextmanager
def made_directory(path: Path) -> Iterator[None]:
    """``path`` made now if absent, and removed again with the parents made for it (those still empty) when the
    block is refused."""
    made = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for folder in made:  # the deepest first
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise


def _choices_help(options, default: str, notes: dict[str, str] | None = None) -> str:
    """``"a (default), b (note) or c"``: each option, the default marked, with its note."""
    notes = notes or {}
    named = [option + (" (default)" if option == default else "") + (f" ({notes[option]})" if option in notes else "")
             for option in options]
    return " or ".join([", ".join(named[:-1]), named[-1]] if len(named) > 1 else named)


def _evaluate_help() -> tuple[tuple[tuple[str, str], ...], ...]:
    """The help of evaluate's string options, its integer options and its shape options (an integer or a list);
    defaults from rqgmm.evaluate.names (EvaluateConfig's)."""
    default = DEFAULTS
    return (
        ("--user", f"user id column (default {default['user']})"),
        ("--item", f"item id column (default {default['item']})"),
        ("--label", f"0/1 label column (default {default['label']})"),
        ("--time", f"time column (default {default['time']}; absent: random split)"),
        ("--categorical", "categorical columns of either table, A,B"),
        ("--bag", "list columns of either table, A,B"), ("--numeric", "numeric columns, A,B"),
        ("--methods", f"tokenizers, A,B, or all (every method) (default {','.join(default['methods'])})"),
        ("--backbones", f"{','.join(BACKBONE_NAMES)} (default {_all_or(default['backbones'], BACKBONE_NAMES)})"),
        ("--variants", f"{','.join(VARIANTS)} (default {_all_or(default['variants'], VARIANTS)})"),
        ("--tokenize", _choices_help(TOKENIZE, default["tokenize"])),
        ("--device", f"torch device (default {default['device']})"),
        ("--task", _choices_help(TASKS, default["task"], {"retrieval": "generative retrieval over the IDs"})),
        ("--sequence", f"retrieval: each user's positive rows (default {default['sequence']}) or all rows"),
        ("--dedup", f"retrieval: generated (the model generates the dedup token, TIGER's; default "
                    f"{default['dedup']}) or none (L codes only, shared IDs ranked by popularity)"),
        ("--epsilon", f"retrieval: the share of the generated list cold items may take by the prefix rule "
                      f"or the dense re-rank (default {default['epsilon']}; 0 to 1; 0: the beam's list alone)"),
    ), (
        ("--seeds", f"number of seeds (default {default['seeds']}; {QUICK_SEEDS} with --quick)"),
    ), (
        ("--levels", f"ID levels L, or a list to sweep, 2,3 (default {SHAPE_DEFAULT})"),
        ("--codebook-size", f"K per level, or a list to sweep, 64,256 (default {SHAPE_DEFAULT})"),
    )


def _all_or(chosen, every) -> str:
    """``all`` when ``chosen`` is every option, else the chosen ones, A,B."""
    return "all" if tuple(chosen) == tuple(every) else ",".join(chosen)


def add_evaluate(sub) -> None:
    ev = sub.add_parser("evaluate", help="what semantic IDs are worth in CTR models on your data (report, plots)")
    ev.add_argument("interactions", help="parquet, one row per impression (user, item, 0/1 label, time, fields)")
    ev.add_argument("--items", required=True, help="parquet with the item id and one or more embedding columns")
    ev.add_argument("--out", required=True, help="output directory: results.json, report.md, PNG plots")
    ev.add_argument("--config", help="TOML file with the same keys as the options below (flags win)")
    strings, integers, shapes = _evaluate_help()
    for flag, text in strings:
        ev.add_argument(flag, default=None, help=text)
    ev.add_argument("--embedding", action="append", default=None,
                    help="embedding column of the items table; repeat for several modalities "
                         f"(default {','.join(DEFAULTS['embedding'])})")
    for flag, text in integers:
        ev.add_argument(flag, type=int_in(1), default=None, help=text)
    for flag, text in shapes:
        ev.add_argument(flag, default=None, help=text)
    ev.add_argument("--sample-users", type=float, default=None, metavar="F",
                    help="keep a fraction F in (0, 1] of the users (a hash of the user id), read before encoding")
    ev.add_argument("--quick", action="store_true",
                    help=f"one seed and at most {QUICK_MAX_EPOCHS} epochs")
    ev.add_argument("--quiet", action="store_true")
    ev.set_defaults(run=cmd_evaluate)


def out_marker(out: str) -> str:
    """What shows ``out`` to be an earlier evaluate's: its finished runs, else (an older output) results.json."""
    return MARKER if (Path(out) / MARKER).is_file() else "results.json"


def cmd_evaluate(args: argparse.Namespace) -> None:
    """The inputs, ``--out`` and every option checked before torch loads, then the evaluation."""
    for path, what in ((args.interactions, "interactions"), (args.items, "items")):
        if not os.path.exists(path):
            raise InputError(f"{what} file {path} does not exist; pass an existing parquet file")
    inputs = [args.interactions, args.items, *([args.config] if args.config else [])]
    check_outputs(inputs, [Output(args.out, "--out", "directory", marker=out_marker(args.out))])
    from rqgmm.evaluate.config import config_from_args  # checks every option first; only then loads the CTR stack

    config = config_from_args(args)
    from rqgmm.evaluate.command import run_evaluate  # heavy imports (pandas, matplotlib, torch): load them only here

    run_evaluate(args, config)
