"""Start-up: ``rqgmm --help``, ``rqgmm VERB --help`` and a refused argument import no torch, scikit-learn or CTR stack.

Checked in a fresh interpreter (``sys.modules`` after the call), never by timing.
The lazy parser (stubs for the verbs not asked for) lists the same verbs with the
same help as the full one.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from rqgmm.cli import build_parser
from rqgmm.cli.verbs import VERBS

HEAVY = ("torch", "sklearn", "rqgmm.ctr", "pandas", "scipy")
PROBE = """
import sys, contextlib, io
from rqgmm.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
    try:
        code = main({argv!r})
    except SystemExit as exc:
        code = exc.code
print(code, [m for m in {heavy!r} if m in sys.modules], repr(err.getvalue()))
"""


def probe(argv: list[str]) -> tuple[int, list[str], str]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)], capture_output=True,
                         text=True, check=True).stdout.split(" ", 2)
    return int(out[0]), eval(out[1]), eval(out[2])


@pytest.mark.parametrize("argv, status", [
    (["--help"], 0),
    (["fit", "--help"], 0), (["encode", "--help"], 0), (["report", "--help"], 0), (["publish", "--help"], 0),
    (["check", "--help"], 0), (["embed", "--help"], 0), (["evaluate", "--help"], 0), (["benchmark", "--help"], 0),
    (["evaluate", "r.parquet", "--items", "i.parquet", "--out", "o", "--seeds", "0"], 2),
    (["evaluate", "r.parquet", "--out", "o"], 2), (["benchmark", "--max-items", "x"], 2),
    (["fit", "x.npy", "--levels", "0", "--out", "m"], 2),
    (["encode", "m", "x.npy", "--out", "c.parquet", "--format", "nope"], 2),
    (["publish", "m", "x.parquet", "--store", "s", "--max-per-prefix", "0"], 2),
    (["nope"], 2),
])
def test_help_and_refused_arguments_import_no_heavy_module(argv, status):
    code, heavy, err = probe(argv)
    assert code == status and heavy == [], (argv, heavy, err)
    if status == 2:
        assert err.count("\n") == 1 and err.startswith("rqgmm: error: ")


def test_the_lazy_parser_lists_every_verb_with_the_full_parsers_help():
    def listed(parser):
        sub = next(a for a in parser._actions if a.dest == "verb")
        return [(a.dest, a.help) for a in sub._choices_actions]

    full = listed(build_parser())
    assert sorted(full) == sorted(listed(build_parser([])))
    assert sorted(full) == sorted((verb, v.help) for verb, v in VERBS.items())


def test_evaluate_help_names_are_the_configs_and_the_ctr_stacks():
    """rqgmm.evaluate.names repeats EvaluateConfig's defaults and the backbones, so the parser needs no torch."""
    from rqgmm.ctr.models import BACKBONES
    from rqgmm.evaluate.config import QUICK_TRAIN, defaults
    from rqgmm.evaluate.names import BACKBONE_NAMES, DEFAULTS, QUICK_MAX_EPOCHS

    assert BACKBONE_NAMES == tuple(BACKBONES) and QUICK_MAX_EPOCHS == QUICK_TRAIN.max_epochs
    assert DEFAULTS == {key: defaults()[key] for key in DEFAULTS}
