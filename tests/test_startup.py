"""Start-up: ``rqgmm --help``, ``rqgmm VERB --help``, a refused argument and a value ``evaluate`` refuses after
parsing (its options, a TOML file, its paths) import no torch, scikit-learn or CTR stack.

Checked in a fresh interpreter (``sys.modules`` after the call), never by timing.
The lazy parser (stubs for the verbs not asked for) lists the same verbs with the
same help as the full one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rqgmm.cli import build_parser
from rqgmm.cli.verbs import VERBS

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "sklearn", "rqgmm.ctr", "pandas", "scipy")
PROBE = """
import sys, contextlib, io, json
from rqgmm.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
    try:
        code = main({argv!r})
    except SystemExit as exc:
        code = exc.code
print(json.dumps([code, [m for m in {heavy!r} if m in sys.modules], err.getvalue()]))
"""


def probe(argv: list[str], cwd=None) -> tuple[int, list[str], str]:
    """(exit status, the heavy modules loaded, stderr) of ``rqgmm ARGV`` in a fresh interpreter (this tree's rqgmm,
    from any ``cwd``)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)], capture_output=True,
                         text=True, check=True, cwd=cwd, env=env).stdout
    code, heavy, err = json.loads(out)
    return code, heavy, err


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


EVALUATE = ["evaluate", "r.parquet", "--items", "i.parquet", "--out", "o"]
TOML = {"bad.toml": b'task = "nope"\n', "unknown.toml": b"nope = 1\n", "broken.toml": b"task = \n",
        "latin.toml": b'methods = "caf\xe9"\n', "sweep.toml": b'levels = [2, 3]\ntask = "retrieval"\n'}


@pytest.mark.parametrize("extra, message", [
    (["--task", "nope"], "unknown --task value(s) ['nope']"),
    (["--methods", "nope"], "unknown --methods value(s) ['nope']"),
    (["--methods", "all", "--backbones", "x"], "unknown --backbones value(s) ['x']"),
    (["--variants", "x"], "unknown --variants value(s)"), (["--tokenize", "x"], "unknown --tokenize value(s)"),
    (["--sequence", "x"], "unknown --sequence value(s)"), (["--dedup", "x"], "unknown --dedup value(s)"),
    (["--epsilon", "2"], "--epsilon must be a number in [0, 1]"),
    (["--sample-users", "0"], "--sample-users must be a number in (0, 1]"),
    (["--levels", "2,2"], "--levels lists 2 twice"), (["--codebook-size", "x"], "codebook_size must be an integer"),
    (["--levels", "2,3", "--task", "retrieval"], "a shape sweep"),
    (["--config", "bad.toml"], "unknown --task value(s) ['nope']"), (["--config", "unknown.toml"], "unknown key 'nope'"),
    (["--config", "broken.toml"], "broken.toml is not valid TOML"), (["--config", "latin.toml"], "is not UTF-8"),
    (["--config", "sweep.toml"], "a shape sweep"), (["--config", "missing.toml"], "missing.toml"),
    (["--out", "r.parquet"], "--out r.parquet is the input r.parquet"),
])
def test_evaluate_refuses_values_after_parsing_without_heavy_modules(tmp_path, extra, message):
    """Values refused after parsing (options, TOML files, paths) answer before torch or the CTR stack load."""
    for name in ("r.parquet", "i.parquet"):
        (tmp_path / name).write_bytes(b"")
    for name, text in TOML.items():
        (tmp_path / name).write_bytes(text)
    code, heavy, err = probe(EVALUATE + extra, cwd=tmp_path)
    assert (code, heavy) == (2, []), (extra, heavy, err)
    assert err.count("\n") == 1 and err.startswith("rqgmm: error: ") and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["r.parquet", "i.parquet", *TOML])


def test_evaluate_refuses_a_missing_input_without_heavy_modules(tmp_path):
    code, heavy, err = probe(EVALUATE + ["--items", "none.parquet"], cwd=tmp_path)
    assert (code, heavy) == (2, []) and err == "rqgmm: error: interactions file r.parquet does not exist; pass an " \
        "existing parquet file\n"


def test_given_zero_values_are_not_read_as_absent():
    """``--epsilon 0`` is a value (no cold item by the prefix rule), not the default 0.1."""
    from rqgmm.evaluate.config import config_from_args

    args = build_parser(["evaluate"]).parse_args(EVALUATE + ["--epsilon", "0"])
    assert config_from_args(args).epsilon == 0.0


def test_the_lazy_parser_lists_every_verb_with_the_full_parsers_help():
    def listed(parser):
        sub = next(a for a in parser._actions if a.dest == "verb")
        return [(a.dest, a.help) for a in sub._choices_actions]

    full = listed(build_parser())
    assert sorted(full) == sorted(listed(build_parser([])))
    assert sorted(full) == sorted((verb, v.help) for verb, v in VERBS.items())


def test_evaluate_help_names_are_the_configs_and_the_ctr_stacks():
    """rqgmm.evaluate.names repeats EvaluateConfig's defaults, the backbones, the retrieval library's names and
    the balanced tokenizers, so the parser and the config's checks need no torch."""
    from rqgmm.ctr.models import BACKBONES
    from rqgmm.evaluate.config import defaults, train_config
    from rqgmm.evaluate.names import BACKBONE_NAMES, BALANCED_METHODS, DEDUP, DEFAULTS, EPSILON, QUICK_MAX_EPOCHS
    from rqgmm.retrieval.cold import EPSILON as RETRIEVAL_EPSILON
    from rqgmm.retrieval.vocab import DEDUP as RETRIEVAL_DEDUP
    from rqgmm.tokenizers.base import tokenizer_class
    from rqgmm.tokenizers.names import BUILTIN_METHODS

    assert BACKBONE_NAMES == tuple(BACKBONES) and QUICK_MAX_EPOCHS == train_config(True, "cpu").max_epochs
    assert DEFAULTS == {key: defaults()[key] for key in DEFAULTS}
    assert (DEDUP, EPSILON) == (RETRIEVAL_DEDUP, RETRIEVAL_EPSILON)
    assert BALANCED_METHODS == tuple(m for m in BUILTIN_METHODS if "balance" in tokenizer_class(m)._get_param_names())


def test_tokenizer_names_are_the_registrys_with_or_without_it_loaded():
    """The light list (no tokenizer imported) equals the one read from the loaded registry."""
    code = ("import sys; from rqgmm.evaluate.config import tokenizer_names; light = tokenizer_names(); "
            "assert 'rqgmm.tokenizers.base' not in sys.modules; import rqgmm.tokenizers.base as b; "
            "[b.tokenizer_class(m) for m in b.methods()]; print(light == tokenizer_names(), light)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("True ['prqkmeans', 'rqgmm', 'rqkmeans'"), out


def test_constraints_need_no_numpy_yet_take_numpy_scalars():
    """The declared constraints load without numpy or torch (so evaluate's options are checked at once), and
    numpy's integers and floats still pass as numbers (numbers.Integral / numbers.Real), bools never."""
    code = "import sys, rqgmm.runtime.constraints; print([m for m in ('numpy', 'torch') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"
    import numpy as np

    from rqgmm.errors import InputError
    from rqgmm.runtime.constraints import Integer, Real

    Integer(1).check("n", np.int64(3)), Real(0.0, 1.0).check("p", np.float32(0.5))
    for constraint, value in ((Integer(1), True), (Integer(1), np.bool_(True)), (Real(0.0, 1.0), np.float64(2.0))):
        with pytest.raises(InputError):
            constraint.check("x", value)


CPU_BUILD = pytest.mark.skipif(__import__("rqgmm.runtime.torch_build", fromlist=["x"]).built_with_cuda() is not False,
                               reason="this torch is built with CUDA: a missing GPU is found by torch itself")


@CPU_BUILD
@pytest.mark.parametrize("argv", [
    EVALUATE + ["--device", "cuda"], EVALUATE + ["--device", "cuda:7"], EVALUATE + ["--device", "mps"],
    ["fit", "x.npy", "--out", "m", "--device", "cuda"], ["benchmark", "--device", "cuda:1", "--out", "b"],
    ["embed", "i.parquet", "--text", "title", "--out", "e.parquet", "--device", "cuda"],
])
def test_a_device_this_torch_build_lacks_is_refused_before_torch_loads(tmp_path, argv):
    for name in ("r.parquet", "i.parquet", "x.npy"):
        (tmp_path / name).write_bytes(b"")
    code, heavy, err = probe(argv, cwd=tmp_path)
    assert (code, heavy) == (2, []), (argv, heavy, err)
    assert err.count("\n") == 1 and "this machine has no" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i.parquet", "r.parquet", "x.npy"]


@CPU_BUILD
@pytest.mark.parametrize("spec", ["cuda", "cuda:7", "mps", "mps:0"])
def test_the_early_device_refusal_says_what_torch_would(spec):
    from rqgmm.errors import InputError
    from rqgmm.runtime.device import resolve_device
    from rqgmm.runtime.torch_build import refuse_absent_device

    with pytest.raises(InputError) as early:
        refuse_absent_device(spec)
    with pytest.raises(InputError) as late:
        resolve_device(spec, what="--device")
    assert str(early.value) == str(late.value)
    refuse_absent_device("cpu")  # and nothing is decided for the rest
    refuse_absent_device(None)
