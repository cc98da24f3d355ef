"""The command-line contract, hunted by generated cases.

Hypothesis draws command lines (every verb x its options x valid and invalid
values, outputs that alias inputs, the working directory or files) over a pool
of input files (valid, truncated, wrong dtype or shape, odd parquet encodings,
damaged model directories, bad code tables). ``rqgmm embed`` gets generated items tables
of odd column types (integers, floats, lists, binary, nulls, dictionary-encoded
and large strings, repeated ids, empty texts), and ``rqgmm evaluate`` generated click logs (ids, labels,
times, numbers and vectors of odd types: number and date strings, NaN, Inf, lists, nulls, empty or
ragged vectors) with command lines that change roles, devices, TOML configs, inputs and outputs. Each case runs the CLI in its own
process (forked from a server that has imported rqgmm once, so a case costs its
work, not an interpreter start) and must:

- exit 0 or 2: never 1, never a signal, no traceback;
- on exit 2: print exactly one line on stderr, ``rqgmm: error: ...``, and write nothing;
- on exit 0: change nothing but its own output.

``RQGMM_CONTRACT_EXAMPLES`` sets the number of cases (default 60, about a minute
on two cores, the same cases every run), ``RQGMM_CONTRACT_EMBED_EXAMPLES`` those
of ``embed`` (default 40) and ``RQGMM_CONTRACT_EVALUATE_EXAMPLES`` those of ``evaluate`` (default 40); with ``RQGMM_CONTRACT_EXPLORE=1`` each
run draws new ones (the longer exploratory run the README documents).
"""

import hashlib
import json
import multiprocessing
import multiprocessing.forkserver
import os
import shutil
import traceback
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_mixture
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

import rqgmm
from rqgmm.files.formats import read_embeddings

EXAMPLES = int(os.environ.get("RQGMM_CONTRACT_EXAMPLES", "60"))
EMBED_EXAMPLES = int(os.environ.get("RQGMM_CONTRACT_EMBED_EXAMPLES", "40"))
EXPLORE = bool(os.environ.get("RQGMM_CONTRACT_EXPLORE"))  # fresh random cases instead of the suite's fixed ones


# ----------------------------------------------------------------------------- the pool


def _parquet(path, ids, emb, **kw):
    pq.write_table(pa.table({"item_id": ids, "embedding": emb}), path, **kw)


def build_pool(d: Path) -> None:
    X = make_mixture(n_per=40, k=6, d=8, seed=5)[0].astype(np.float32)
    n = len(X)
    ids = np.arange(1000, 1000 + n)
    np.save(d / "x.npy", X)
    np.save(d / "x64.npy", X.astype(np.float64))
    np.save(d / "xint.npy", (X * 10).astype(np.int32))
    np.save(d / "xbig.npy", X.astype(">f8"))
    _parquet(d / "x.parquet", ids, list(X))
    # odd but valid parquet encodings
    _parquet(d / "large.parquet", ids, pa.array(list(X), type=pa.large_list(pa.float32())))
    _parquet(d / "fixed.parquet", ids, pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), 8))
    _parquet(d / "f16.parquet", ids, pa.array(list(X.astype(np.float16)), type=pa.list_(pa.float16())))
    _parquet(d / "strid.parquet", [f"item-{i}" for i in ids], list(X))
    pq.write_table(pa.table({"item_id": pa.array([f"i{i}" for i in ids]).dictionary_encode(),
                             "embedding": list(X)}), d / "dict.parquet")
    _parquet(d / "gzip.parquet", ids, list(X), compression="gzip")
    # invalid embeddings
    (d / "trunc.npy").write_bytes((d / "x.npy").read_bytes()[:200])
    (d / "zero.npy").write_bytes(b"")
    (d / "text.npy").write_text("1,2,3\n")
    np.save(d / "vec.npy", X[:, 0])
    np.save(d / "cube.npy", X.reshape(n, 2, 4))
    np.save(d / "complex.npy", X.astype(np.complex64))
    np.save(d / "empty.npy", np.zeros((0, 8), np.float32))
    nan = X.copy()
    nan[[1, 7], 2] = np.nan
    np.save(d / "nan.npy", nan)
    np.save(d / "huge.npy", np.full((n, 8), 1e300))
    np.save(d / "wide.npy", np.ones((n, 9), np.float32))
    _parquet(d / "dup.parquet", np.zeros(n, np.int64), list(X))
    _parquet(d / "ragged.parquet", ids, [row[: 8 - (i % 2)] for i, row in enumerate(X)])
    _parquet(d / "nullrow.parquet", ids, [None, *list(X[1:])])
    _parquet(d / "nullval.parquet", ids, [[None] * 8, *[list(map(float, r)) for r in X[1:]]])
    _parquet(d / "nested.parquet", ids, [[list(map(float, r))] for r in X])
    _parquet(d / "binary.parquet", ids, [r.tobytes() for r in X])
    _parquet(d / "empty.parquet", pa.array([], pa.int64()), pa.array([], pa.list_(pa.float32())))
    pq.write_table(pa.table({"id": ids, "embedding": list(X)}), d / "noid.parquet")
    _parquet(d / "nullid.parquet", [None, *ids[1:].tolist()], list(X))
    (d / "trunc.parquet").write_bytes((d / "x.parquet").read_bytes()[:300])
    # models, valid and damaged
    with warnings.catch_warnings():  # a few iterations make small valid models; converging is not the point
        warnings.simplefilter("ignore", rqgmm.ConvergenceWarning)
        model = rqgmm.RQGMM(2, 4, random_state=0, progress=False, max_iter=5).fit(X)
        rqgmm.PRQKMeans(2, 4, random_state=0, progress=False, max_iter=2).fit(X).save(d / "prq")
    model.save(d / "model")
    _damaged_models(d)
    # codes
    codes = model.encode(X)
    pq.write_table(pa.table({"item_id": ids, "c1": codes[:, 0], "c2": codes[:, 1]}), d / "codes.parquet")
    np.save(d / "codes.npy", codes)
    np.save(d / "cfloat.npy", codes.astype(np.float32))
    np.save(d / "cneg.npy", codes - 5)
    np.save(d / "cbig.npy", codes + 100)
    np.save(d / "cshort.npy", codes[:10])
    pq.write_table(pa.table({"item_id": ids, "a": codes[:, 0]}), d / "cnocols.parquet")
    pq.write_table(pa.table({"item_id": ids, "c1": [None, *codes[1:, 0].tolist()]}), d / "cnull.parquet")
    pq.write_table(pa.table({"item_id": ids + 10**6, "c1": codes[:, 0]}), d / "cotherids.parquet")
    pq.write_table(pa.table({"item_id": np.zeros(n, np.int64), "c1": codes[:, 0]}), d / "cdupids.parquet")
    (d / "afile").write_text("a user's file")
    (d / "userdir").mkdir()
    (d / "userdir" / "notes.txt").write_text("a user's notes")


def _damaged_models(d: Path) -> None:
    def copy(name):
        shutil.copytree(d / "model", d / name)
        return d / name

    (copy("m_noconfig") / "config.json").unlink()
    (copy("m_badjson") / "config.json").write_text("{not json")
    (copy("m_notensors") / "model.safetensors").unlink()
    t = copy("m_trunc") / "model.safetensors"
    t.write_bytes(t.read_bytes()[:100])
    for name, change in [("m_version", {"format_version": 99}), ("m_method", {"method": "nope"}),
                         ("m_levels", {"levels": 3, "codebook_size": [4, 4, 4]}), ("m_dim", {"n_features": 5}),
                         ("m_sizes", {"effective_codebook_size": [4, 3]})]:
        path = copy(name) / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    from safetensors.torch import load_file, save_file

    for name, key, value in [("m_nan", "level0.means", float("nan")), ("m_negvar", "level1.variances", -1.0),
                             ("m_zeroscale", "scale", 0.0)]:
        path = copy(name) / "model.safetensors"
        tensors = load_file(str(path))
        tensors[key] = tensors[key].fill_(value)
        save_file(tensors, str(path))


EMB = ["x.npy", "x64.npy", "xint.npy", "xbig.npy", "x.parquet", "large.parquet", "fixed.parquet", "f16.parquet",
       "strid.parquet", "dict.parquet", "gzip.parquet", "trunc.npy", "zero.npy", "text.npy", "vec.npy", "cube.npy",
       "complex.npy", "empty.npy", "nan.npy", "huge.npy", "wide.npy", "dup.parquet", "ragged.parquet",
       "nullrow.parquet", "nullval.parquet", "nested.parquet", "binary.parquet", "empty.parquet", "noid.parquet",
       "nullid.parquet", "trunc.parquet", "missing.npy", "afile", "model", "codes.npy"]
MODELS = ["model", "prq", "m_noconfig", "m_badjson", "m_notensors", "m_trunc", "m_version", "m_method", "m_levels",
          "m_dim", "m_sizes", "m_nan", "m_negvar", "m_zeroscale", "missing", "afile", "x.npy"]
CODES = ["codes.parquet", "codes.npy", "cfloat.npy", "cneg.npy", "cbig.npy", "cshort.npy", "cnocols.parquet",
         "cnull.parquet", "cotherids.parquet", "cdupids.parquet", "x.npy", "missing.parquet", "model"]
DIR_OUTS = ["new_model", "deep/er/model", "model", "prq", "x.npy", "x.parquet", "afile", "afile/model", ".", "..",
            "userdir", "m_noconfig", "codes.parquet"]
FILE_OUTS = ["c.parquet", "c.npy", "deep/c.parquet", "c.txt", "x.npy", "x.parquet", "codes.parquet", "model",
             "model/c.parquet", "afile/c.npy", "userdir", ".", "model/model.safetensors"]
INTS = ["1", "2", "3", "0", "-1", "2.5", "abc", "", "99999999999999999999"]
OPTIONS = {
    "--method": ["rqgmm", "rqkmeans", "prqkmeans", "rqvae", "vqvae", "nope", ""],
    "--levels": INTS,
    "--codebook-size": ["2", "4", "3,2", "4,4,4", "0", "-2", "2,x", "5,"],
    "--seed": ["0", "7", "-1", "4294967296", "x"],
    "--device": ["cpu", "cpu:0", "cuda", "cuda:3", "nonsense", "meta", ""],
    "--max-iter": INTS,
    "--chunk-size": INTS,
    "--checkpoint": ["ckpt", "model", "x.npy", "afile", "new_model/ckpt", "."],
}


@st.composite
def command(draw):
    verb = draw(st.sampled_from(["fit", "encode", "report"]))
    quiet = ["--quiet"] if draw(st.booleans()) else []
    if verb == "fit":
        argv = ["fit", draw(st.sampled_from(EMB))]
        for flag in draw(st.lists(st.sampled_from(sorted(OPTIONS)), unique=True, max_size=4)):
            argv += [flag, draw(st.sampled_from(OPTIONS[flag]))]
        if "--max-iter" not in argv:
            argv += ["--max-iter", "3"]  # keep valid fits short
        return argv + ["--out", draw(st.sampled_from(DIR_OUTS)), *quiet]
    if verb == "encode":
        argv = ["encode", draw(st.sampled_from(MODELS)), draw(st.sampled_from(EMB)),
                "--out", draw(st.sampled_from(FILE_OUTS))]
        return argv + (["--unique"] if draw(st.booleans()) else []) + quiet
    argv = ["report", draw(st.sampled_from(EMB)), draw(st.sampled_from(CODES))]
    if draw(st.booleans()):
        argv += ["--model", draw(st.sampled_from(MODELS))]
    return argv + (["--json"] if draw(st.booleans()) else []) + quiet


# ----------------------------------------------------------------------------- running


def _child(argv: list[str], cwd: str, out: str, err: str, env: dict[str, str]) -> None:
    """Run the CLI as a fresh process would: its own cwd, environment and streams; an uncaught error is exit 1."""
    import sys

    import torch

    from rqgmm import cli

    torch.set_num_threads(1)
    os.chdir(cwd)
    os.environ.update(env)
    for fd, path in ((1, out), (2, err)):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    sys.stdout, sys.stderr = open(1, "w", closefd=False), open(2, "w", closefd=False)
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@pytest.fixture(scope="module")
def server(monkeypatch_module):
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["rqgmm.cli", "rqgmm.tokenizers.residual", "rqgmm.tokenizers.prq", "rqgmm.tokenizers.vae", "torch",
                                "rqgmm.data.embed_table", "sklearn.feature_extraction.text", __name__])
    # Python 3.11's fork server drops the parent's sys.path, so it could not preload this module and every
    # case re-imported it (hypothesis, conftest: most of a short case's time). It starts with this path.
    path = os.pathsep.join(p for p in (str(Path(__file__).parent), os.environ.get("PYTHONPATH")) if p)
    monkeypatch_module.setenv("PYTHONPATH", path)
    multiprocessing.forkserver.ensure_running()
    return ctx


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def run_case(ctx, argv: list[str], cwd: Path) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of ``rqgmm argv`` run in ``cwd``, its embedding cache beside ``cwd``."""
    out, err = cwd.parent / "stdout.txt", cwd.parent / "stderr.txt"
    env = {"RQGMM_CACHE": str(cwd.parent / "cache")}
    proc = ctx.Process(target=_child, args=(argv, str(cwd), str(out), str(err), env))
    proc.start()
    proc.join(300)
    if proc.is_alive():
        proc.kill()
        pytest.fail(f"rqgmm {' '.join(argv)} hung")
    return proc.exitcode, out.read_text(), err.read_text()


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): "dir" if p.is_dir() else hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    d = tmp_path_factory.mktemp("pool")
    build_pool(d)
    return d


def _outputs(argv: list[str]) -> list[str]:
    outs = [argv[i + 1] for i, a in enumerate(argv)
            if a in ("--out", "--checkpoint", "--store") and i + 1 < len(argv)]
    return [os.path.normpath(o) for o in outs]


def check_contract(code: int, out: str, err: str, argv: list[str], before: dict, after: dict) -> None:
    cmd = "rqgmm " + " ".join(argv)
    assert code in (0, 2), f"{cmd}: exit {code}\n{err}"
    assert "Traceback" not in err, f"{cmd}\n{err}"
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("rqgmm: error: "), f"{cmd}\n{err}"
        assert after == before, f"{cmd}: wrote or changed files on exit 2"
        return
    mine = _outputs(argv)
    for path, digest in before.items():
        if any(path == o or path.startswith(o + os.sep) for o in mine):
            continue
        assert after.get(path) == digest, f"{cmd}: changed {path}, which is not its output"


@settings(max_examples=EXAMPLES, deadline=None, derandomize=not EXPLORE, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(argv=command())
def test_generated_command_lines_keep_the_contract(server, pool, tmp_path_factory, argv):
    case = tmp_path_factory.mktemp("case")
    work = case / "work"
    shutil.copytree(pool, work, symlinks=True)
    before = snapshot(work)
    code, out, err = run_case(server, argv, work)
    event(f"{argv[0]}: exit {code}")
    check_contract(code, out, err, argv, before, snapshot(work))
    shutil.rmtree(case)


@pytest.mark.parametrize("argv", [
    ["fit", "x.npy", "--levels", "2", "--codebook-size", "3", "--max-iter", "2", "--out", "new_model"],
    ["encode", "model", "x.parquet", "--out", "c.parquet", "--unique"],
    ["report", "x.parquet", "codes.parquet", "--model", "model", "--json"],
])
def test_valid_commands_succeed_in_the_harness(server, pool, tmp_path, argv):
    """The harness itself: valid commands exit 0 and write their output."""
    work = tmp_path / "work"
    shutil.copytree(pool, work, symlinks=True)
    code, out, err = run_case(server, argv, work)
    assert code == 0, err
    if argv[0] != "report":
        assert (work / _outputs(argv)[0]).exists()
    else:
        assert json.loads(out)["n_items"] == 240


# ----------------------------------------------------------------------------- embed: generated items tables


def _texts_as(kind: str, texts: list) -> pa.Array:
    """The drawn texts (str or None) stored as a column of ``kind``."""
    if kind == "list":
        return pa.array([None if t is None else [t] for t in texts], pa.list_(pa.string()))
    if kind == "binary":
        return pa.array([None if t is None else t.encode() for t in texts], pa.binary())
    if kind == "struct":
        return pa.array([{"text": t} for t in texts], pa.struct([("text", pa.string())]))
    strings = pa.array(texts, pa.large_string() if kind == "large_string" else pa.string())
    return strings.dictionary_encode() if kind == "dictionary" else strings


def _ids_as(kind: str, ids: list[int]) -> pa.Array:
    """The drawn ids (small ints, may repeat) stored as a column of ``kind``."""
    if kind == "int":
        return pa.array(ids, pa.int64())
    if kind == "uint8":
        return pa.array([i + 3 for i in ids], pa.uint8())
    if kind == "float":
        return pa.array([float(i) for i in ids])
    if kind == "null":
        return pa.nulls(len(ids))
    if kind == "bool":
        return pa.array([i > 0 for i in ids])
    strings = pa.array([f"item-{i}" for i in ids], pa.large_string() if kind == "large_string" else pa.string())
    return strings.dictionary_encode() if kind == "dictionary" else strings


def mostly(usual: list, odd: list) -> st.SearchStrategy:
    """One of ``usual``, or one of ``odd`` a quarter of the time (so that many cases get past the first check)."""
    return st.tuples(st.booleans(), st.booleans()).flatmap(lambda b: st.sampled_from(odd if all(b) else usual))


TEXT_KINDS = mostly(["string", "large_string", "dictionary"], ["list", "binary", "struct", "null"])
ID_KINDS = mostly(["int", "string", "large_string", "dictionary", "uint8"], ["float", "null", "bool"])
TEXTS = st.sampled_from(["Heat", "Toy Story", "Casino.", " Nosferatu\n"]) | st.text(alphabet="ab.!é", min_size=1,
                                                                                   max_size=5)
ODD_TEXTS = TEXTS | st.none() | st.sampled_from(["", " ", "\t\n"])
#: Flag -> values that may break it, for commands that change one thing of a valid one.
EMBED_CHANGES = {
    "items": ["missing.parquet", "afile", "userdir", "old.parquet", "dir.parquet"],
    "--text": ["description", "nope", "title,nope", "item_id", "title,title", ",", "", "title,"],
    "--out": ["deep/e.parquet", "items.parquet", "e.npy", "afile", "afile/e.parquet", "userdir", ".", "old.parquet",
              "userdir/e.parquet", "dir.parquet", "./items.parquet"],
    "--item": ["title", "sku", "", "description"],
    "--model": ["hashing", "hashing-0", "hashing-x", "bert", ""],
    "--device": OPTIONS["--device"],
    "--batch-size": INTS,
}


@st.composite
def items_table(draw) -> pa.Table:
    """A small items table: ``item_id``, ``title``, ``description`` of drawn types; ids may repeat, texts be null,
    a column name appear twice."""
    n = draw(mostly([1, 2, 3, 5], [0, 1]))
    ids = draw(st.lists(st.integers(-2, 9), min_size=n, max_size=n, unique=draw(mostly([True], [False]))))
    columns = [_ids_as(draw(ID_KINDS), ids)]
    for _ in range(2):
        texts = draw(st.lists(draw(mostly([TEXTS], [ODD_TEXTS])), min_size=n, max_size=n))
        kind = draw(TEXT_KINDS)
        columns.append(pa.nulls(n) if kind == "null" else _texts_as(kind, texts))
    names = ["item_id", "title", draw(mostly(["description"], ["title", "item_id"]))]  # parquet allows repeats
    return pa.Table.from_arrays(columns, names=names)


@st.composite
def embed_command(draw) -> list[str]:
    """A valid ``embed`` command line; in about half of the cases one or two of its parts changed."""
    parts = {"items": "items.parquet", "--text": draw(st.sampled_from(["title", "title,description", " title"])),
             "--out": "e.parquet", "--model": "hashing-8"}  # the real model would only make the test slower
    changes = draw(mostly([0, 0, 1], [1, 2]))
    for flag in draw(st.lists(st.sampled_from(sorted(EMBED_CHANGES)), unique=True, min_size=changes, max_size=changes)):
        parts[flag] = draw(st.sampled_from(EMBED_CHANGES[flag]))
    argv = ["embed", parts.pop("items")]
    for flag, value in parts.items():
        argv += [flag, value]
    return argv + (["--quiet"] if draw(st.booleans()) else [])


@settings(max_examples=EMBED_EXAMPLES, deadline=None, derandomize=not EXPLORE, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(table=items_table(), argv=embed_command())
def test_generated_embed_commands_keep_the_contract(server, tmp_path_factory, table, argv):
    case = tmp_path_factory.mktemp("embed")
    work = case / "work"
    work.mkdir()
    pq.write_table(table, work / "items.parquet")
    pq.write_table(table, work / "old.parquet")
    (work / "afile").write_text("a user's file")
    (work / "userdir").mkdir()
    (work / "dir.parquet").mkdir()
    before = snapshot(work)
    code, out, err = run_case(server, argv, work)
    event(f"embed: exit {code}")
    check_contract(code, out, err, argv, before, snapshot(work))
    if code == 0:
        ids, X = read_embeddings(work / _outputs(argv)[0])
        assert len(ids) == len(X) == table.num_rows and np.isfinite(X).all(), f"rqgmm {' '.join(argv)}"
    shutil.rmtree(case)


# ----------------------------------------------------------------------------- evaluate: generated logs

EVALUATE_EXAMPLES = int(os.environ.get("RQGMM_CONTRACT_EVALUATE_EXAMPLES", "40"))
#: The cheapest valid evaluation: one tokenizer of one level, one backbone, two variants, one seed.
EVALUATE_BASE = ["--quick", "--methods", "rqkmeans", "--levels", "1", "--codebook-size", "2", "--backbones", "fnn",
                 "--variants", "none,ids", "--seeds", "1"]


def _times_as(kind: str, times: np.ndarray) -> pa.Array:
    """Increasing-ish seconds (N,) stored as a column of ``kind``."""
    stamps = times.astype("datetime64[s]")
    return {"int": lambda: pa.array(times), "float": lambda: pa.array(times.astype(float)),
            "datetime": lambda: pa.array(stamps), "iso": lambda: pa.array([str(s) for s in stamps]),
            "number-strings": lambda: pa.array([str(t) for t in times]),
            "nan": lambda: pa.array(np.where(times % 7 == 0, np.nan, times.astype(float))),
            "garbage": lambda: pa.array([f"t{t}x" for t in times]), "bool": lambda: pa.array(times % 2 == 0),
            "list": lambda: pa.array([[int(t)] for t in times]), "null": lambda: pa.nulls(len(times))}[kind]()


def _labels_as(kind: str, labels: np.ndarray) -> pa.Array:
    return {"int": lambda: pa.array(labels), "bool": lambda: pa.array(labels.astype(bool)),
            "float": lambda: pa.array(labels.astype(float)), "string": lambda: pa.array([str(v) for v in labels]),
            "two": lambda: pa.array(labels * 2), "null": lambda: pa.array([None] * min(1, len(labels)) + labels[1:].tolist(), pa.int64())}[kind]()


def _numbers_as(kind: str, values: np.ndarray) -> pa.Array:
    return {"float": lambda: pa.array(values), "int": lambda: pa.array(np.round(values * 10).astype(int)),
            "nan": lambda: pa.array(np.where(values > 0.8, np.nan, values)),
            "inf": lambda: pa.array(np.where(values > 0.9, np.inf, values)),
            "string": lambda: pa.array([f"{v:.2f}" for v in values]), "null": lambda: pa.nulls(len(values)),
            "list": lambda: pa.array([[v] for v in values])}[kind]()


def _vectors_as(kind: str, X: np.ndarray) -> pa.Array:
    rows = X.tolist()
    if kind == "empty":
        rows = [[] for _ in rows]
    elif kind == "none":
        rows = [None] * min(1, len(rows)) + rows[1:]
    elif kind == "nan" and rows:
        rows[0][0] = float("nan")
    elif kind == "widths" and rows:
        rows[0] = rows[0][:2]
    elif kind == "string":
        return pa.array([str(r) for r in rows])
    return pa.array(rows, pa.list_(pa.float32()))


@st.composite
def click_log(draw) -> tuple[pa.Table, pa.Table]:
    """A small log (user_id, item_id, label, timestamp, hour, dwell, tags) and items (item_id, embedding, brand), each
    column of a drawn, sometimes odd, type."""
    rng = np.random.default_rng(draw(st.integers(0, 1 << 16)))
    n, m = draw(mostly([120, 160], [0, 6, 12])), draw(mostly([12, 20], [1, 3]))
    items = np.arange(m)
    item_of_row = rng.integers(0, m, n) if n else np.zeros(0, int)
    users, labels, times = rng.integers(0, 15, n), (rng.random(n) < 0.4).astype(np.int64), np.sort(rng.integers(0, 10**6, n))
    if n:
        labels[::2] = np.arange(0, n, 2) % 4 == 0  # both labels in every part of the split
        labels[1::2] = 1 - labels[::2][: len(labels[1::2])]
    log = pa.Table.from_arrays([
        _ids_as(draw(mostly(["int", "string"], ["float", "null", "bool"])), users.tolist()),
        _ids_as(draw(mostly(["int"], ["string", "float"])), item_of_row.tolist()),
        _labels_as(draw(mostly(["int", "bool", "float"], ["string", "two", "null"])), labels),
        _times_as(draw(mostly(["int", "float", "datetime", "iso", "number-strings"],
                              ["nan", "garbage", "bool", "list", "null"])), times),
        _ids_as(draw(mostly(["int", "string", "dictionary"], ["float", "null"])), (times % 24).tolist()),
        _numbers_as(draw(mostly(["float", "int", "nan"], ["inf", "string", "null", "list"])), rng.random(n)),
        pa.array([[int(t % 5)] for t in times], pa.list_(pa.int64())),
    ], names=["user_id", "item_id", "label", "timestamp", "hour", "dwell", "tags"])
    table = pa.Table.from_arrays([
        _ids_as(draw(mostly(["int"], ["string", "float"])), items.tolist()),
        _vectors_as(draw(mostly(["ok"], ["empty", "none", "nan", "widths", "string"])),
                    rng.normal(size=(m, 4)).astype(np.float32)),
        _ids_as(draw(mostly(["string", "dictionary"], ["null", "float"])), (items % 3).tolist()),
    ], names=["item_id", "embedding", "brand"])
    return log, table


#: Flag -> values that may break it, for commands that change one thing of a valid one.
EVALUATE_CHANGES = {
    "--user": ["item_id", "label", "nope", "tags"],
    "--numeric": ["label", "hour", "brand", "dwell,dwell"],
    "--categorical": ["tags", "user_id", "hour,brand", "embedding"],
    "--bag": ["hour", "tags"],
    "--time": ["hour", "nope", "label", "dwell"],
    "--device": OPTIONS["--device"],
    "--config": ["float.toml", "bool.toml", "ok.toml", "bad.toml", "missing.toml"],
    "--out": ["afile", "userdir", "inter.parquet", ".", "deep/out"],
    "--embedding": ["brand", "nope", "embedding,embedding"],
    "--levels": ["0", "-1", "x", "2"],
    "interactions": ["missing.parquet", "afile", "userdir", "items.parquet", "float.toml"],
    "--items": ["missing.parquet", "afile", "inter.parquet", "userdir"],
}


@st.composite
def evaluate_command(draw) -> list[str]:
    """A valid ``evaluate`` command line; in about half of the cases one or two of its parts changed."""
    parts = {"interactions": "inter.parquet", "--items": "items.parquet", "--out": "out", "--categorical": "hour",
             "--numeric": "dwell"}
    changes = draw(mostly([0, 0, 1], [1, 2]))
    for flag in draw(st.lists(st.sampled_from(sorted(EVALUATE_CHANGES)), unique=True, min_size=changes,
                              max_size=changes)):
        parts[flag] = draw(st.sampled_from(EVALUATE_CHANGES[flag]))
    argv = ["evaluate", parts.pop("interactions"), *EVALUATE_BASE]
    for flag, value in parts.items():
        argv += [flag, value]
    return argv + (["--quiet"] if draw(st.booleans()) else [])


@settings(max_examples=EVALUATE_EXAMPLES, deadline=None, derandomize=not EXPLORE, database=None,
          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink], suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(tables=click_log(), argv=evaluate_command())
def test_generated_evaluate_commands_keep_the_contract(server, tmp_path_factory, tables, argv):
    case = tmp_path_factory.mktemp("evaluate")
    work = case / "work"
    work.mkdir()
    pq.write_table(tables[0], work / "inter.parquet")
    pq.write_table(tables[1], work / "items.parquet")
    (work / "afile").write_text("a user's file")
    (work / "userdir").mkdir()
    (work / "userdir" / "notes.txt").write_text("a user's notes")
    for name, text in (("float", "levels = 2.7"), ("bool", "seeds = true"), ("ok", "levels = 1"), ("bad", "levels =")):
        (work / f"{name}.toml").write_text(text + "\n")
    before = snapshot(work)
    code, out, err = run_case(server, argv, work)
    event(f"evaluate: exit {code}")
    check_contract(code, out, err, argv, before, snapshot(work))
    if code == 0:
        assert "## Verdict" in (work / _outputs(argv)[0] / "report.md").read_text(), f"rqgmm {' '.join(argv)}"
    shutil.rmtree(case)
