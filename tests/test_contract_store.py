"""The command-line contract of ``publish``, ``report STORE``, ``check`` and ``evaluate --task retrieval``, hunted
by generated cases (the harness and the contract of :mod:`test_contract`).

The pool holds test_contract's files and a published store, damaged copies of it (a line added to the
vocabulary, the lookup deleted, a generation file truncated, a manifest that is not JSON), catalogues of
other column names or more items, and logs for ``--interactions``. A ``publish`` may change only its
``--store``; ``report`` and ``check`` change nothing; every exit is 0 or 2, a 2 with one line.

``RQGMM_CONTRACT_STORE_EXAMPLES`` sets the number of store cases (default 40) and
``RQGMM_CONTRACT_RETRIEVAL_EXAMPLES`` the retrieval ones (default 8); ``RQGMM_CONTRACT_EXPLORE=1`` draws
new ones each run (the longer exploratory run, outside CI).
"""

import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_contract import (EVALUATE_BASE, EXPLORE, INTS, build_pool, check_contract, click_log,  # noqa: F401
                           monkeypatch_module, mostly, run_case, server, snapshot)

STORE_EXAMPLES = int(os.environ.get("RQGMM_CONTRACT_STORE_EXAMPLES", "40"))
RETRIEVAL_EXAMPLES = int(os.environ.get("RQGMM_CONTRACT_RETRIEVAL_EXAMPLES", "8"))


def _damaged_stores(d: Path) -> None:
    def copy(name: str) -> Path:
        shutil.copytree(d / "store", d / name)
        return d / name

    with open(next((copy("s_vocab") / "exports").rglob("vocab.txt")), "a") as handle:
        handle.write("extra\n")
    next((copy("s_nolookup") / "exports").rglob("lookup.parquet")).unlink()
    generation = next((copy("s_trunc") / "generations").glob("*.parquet"))
    generation.write_bytes(generation.read_bytes()[:200])
    (copy("s_manifest") / "manifest.json").write_text("{not json")
    shutil.rmtree(copy("s_nogen") / "generations")


def build_store_pool(d: Path) -> None:
    """test_contract's pool, a store published from it, damaged stores, catalogues and logs."""
    from rqgmm import cli

    build_pool(d)
    assert cli.main(["publish", str(d / "model"), str(d / "x.parquet"), "--store", str(d / "store"), "--quiet"]) == 0
    _damaged_stores(d)
    ids, X = pq.read_table(d / "x.parquet").column("item_id"), pq.read_table(d / "x.parquet").column("embedding")
    pq.write_table(pa.table({"sku": ids, "vec": X}), d / "sku.parquet")
    more = np.random.default_rng(1).normal(size=(30, 8)).astype(np.float32)
    pq.write_table(pa.table({"item_id": pa.concat_arrays([ids.combine_chunks(), pa.array(np.arange(5000, 5030))]),
                             "embedding": pa.concat_arrays([X.combine_chunks(), pa.array(list(more))])}),
                   d / "more.parquet")
    pq.write_table(pa.table({"item_id": ids[:100]}), d / "half.parquet")  # retires items
    rng = np.random.default_rng(0)
    logged = rng.choice(ids.to_numpy(), 300)
    pq.write_table(pa.table({"item_id": logged, "user_id": rng.integers(0, 9, 300)}), d / "log.parquet")
    pq.write_table(pa.table({"item_id": logged + 10**6}), d / "log_none.parquet")
    pq.write_table(pa.table({"item_id": [str(i) for i in logged]}), d / "log_str.parquet")
    pq.write_table(pa.table({"sku": logged}), d / "log_sku.parquet")
    pq.write_table(pa.table({"item_id": pa.array([], pa.int64())}), d / "log_empty.parquet")


STORES = ["store", "s_vocab", "s_nolookup", "s_trunc", "s_manifest", "s_nogen", "newstore", "deep/er/store",
          "afile", "userdir", "x.parquet", "model", ".", "missing"]
CATALOGUES = ["x.parquet", "more.parquet", "half.parquet", "sku.parquet", "strid.parquet", "dup.parquet",
              "nullid.parquet", "empty.parquet", "ragged.parquet", "nan.npy", "x.npy", "trunc.parquet", "afile",
              "missing.parquet", "f16.parquet", "dict.parquet", "wide.npy"]
PUBLISH_MODELS = ["model", "prq", "m_dim", "m_trunc", "m_noconfig", "missing", "afile"]
PUBLISH_OPTIONS = {"--max-per-prefix": INTS, "--reuse-retired": None, "--no-suffix": None,
                   "--item": ["item_id", "sku", "nope", ""], "--embedding": ["embedding", "vec", "nope", ""]}
REPORT_OPTIONS = {"--generation": ["1", "2", "0", "-1", "x", "99"], "--json": None,
                  "--interactions": ["log.parquet", "log_none.parquet", "log_str.parquet", "log_sku.parquet",
                                     "log_empty.parquet", "missing.parquet", "afile", "x.npy"],
                  "--item": ["item_id", "sku", "nope"], "--model": ["model", "missing"]}


def _options(draw, table: dict) -> list[str]:
    argv = []
    for flag in draw(st.lists(st.sampled_from(sorted(table)), unique=True, max_size=3)):
        argv += [flag] if table[flag] is None else [flag, draw(st.sampled_from(table[flag]))]
    return argv


@st.composite
def store_command(draw) -> list[str]:
    verb = draw(st.sampled_from(["publish", "publish", "report", "check"]))
    quiet = ["--quiet"] if draw(st.booleans()) else []
    store = draw(mostly(["store", "newstore"], STORES))
    if verb == "publish":
        return ["publish", draw(mostly(["model"], PUBLISH_MODELS)), draw(mostly(["x.parquet", "more.parquet"],
                CATALOGUES)), "--store", store, *_options(draw, PUBLISH_OPTIONS), *quiet]
    if verb == "check":
        return ["check", store, *quiet]
    return ["report", store, *_options(draw, REPORT_OPTIONS), *quiet]


@pytest.fixture(scope="module")
def store_pool(tmp_path_factory):
    d = tmp_path_factory.mktemp("store_pool")
    build_store_pool(d)
    return d


@settings(max_examples=STORE_EXAMPLES, deadline=None, derandomize=not EXPLORE, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(argv=store_command())
def test_generated_store_commands_keep_the_contract(server, store_pool, tmp_path_factory, argv):  # noqa: F811 (fixture)
    case = tmp_path_factory.mktemp("case")
    work = case / "work"
    shutil.copytree(store_pool, work, symlinks=True)
    before = snapshot(work)
    code, out, err = run_case(server, argv, work)
    event(f"{argv[0]}: exit {code}")
    check_contract(code, out, err, argv, before, snapshot(work))
    if argv[0] in ("report", "check"):
        assert snapshot(work) == before, f"rqgmm {' '.join(argv)}: {argv[0]} wrote into the pool"
    shutil.rmtree(case)


# ----------------------------------------------------------------------------- evaluate --task retrieval

RETRIEVAL_CHANGES = {
    "--sequence": ["positives", "all", "nope", ""],
    "--dedup": ["generated", "none", "nope"],
    "--epsilon": ["0", "1", "0.5", "-0.1", "1.5", "x", "nan"],
    "--label": ["label", "hour", "dwell", "nope"],
    "--user": ["item_id", "hour", "nope"],
    "--time": ["hour", "nope", "dwell"],
    "--levels": ["0", "2", "2,3"],
    "--sample-users": ["0.5", "0", "1", "2"],
}


@st.composite
def retrieval_command(draw) -> list[str]:
    """A valid ``evaluate --task retrieval`` command line; in about half of the cases one or two parts changed."""
    parts = {"--out": "out", "--task": draw(mostly(["retrieval"], ["both"]))}
    changes = draw(mostly([0, 0, 1], [1, 2]))
    for flag in draw(st.lists(st.sampled_from(sorted(RETRIEVAL_CHANGES)), unique=True, min_size=changes,
                              max_size=changes)):
        parts[flag] = draw(st.sampled_from(RETRIEVAL_CHANGES[flag]))
    argv = ["evaluate", "inter.parquet", "--items", "items.parquet", *EVALUATE_BASE]
    for flag, value in parts.items():
        argv += [flag, value]
    return argv + (["--quiet"] if draw(st.booleans()) else [])


@settings(max_examples=RETRIEVAL_EXAMPLES, deadline=None, derandomize=not EXPLORE, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(tables=click_log(), argv=retrieval_command())
def test_generated_retrieval_commands_keep_the_contract(server, tmp_path_factory, tables, argv):  # noqa: F811
    case = tmp_path_factory.mktemp("retrieval")
    work = case / "work"
    work.mkdir()
    pq.write_table(tables[0], work / "inter.parquet")
    pq.write_table(tables[1], work / "items.parquet")
    before = snapshot(work)
    code, out, err = run_case(server, argv, work)
    event(f"retrieval: exit {code}")
    check_contract(code, out, err, argv, before, snapshot(work))
    if code == 0:
        assert "## Generative retrieval" in (work / "out" / "report.md").read_text(), f"rqgmm {' '.join(argv)}"
    shutil.rmtree(case)
