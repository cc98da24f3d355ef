"""The store verbs in a real pipeline: other column names, a report a person reads, a log that does not match."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rqgmm import cli
from rqgmm.store.generations import Store

MODEL = Path(__file__).parent / "fixtures" / "previous_release" / "model"


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def store(tmp_path, capsys):
    x = np.random.default_rng(0).normal(size=(80, 6)).astype(np.float32)
    pq.write_table(pa.table({"sku": np.arange(100, 180), "vec": list(x)}), tmp_path / "cat.parquet")
    path = tmp_path / "store"
    code, out, err = run(capsys, "publish", MODEL, tmp_path / "cat.parquet", "--store", path, "--item", "sku",
                         "--embedding", "vec", "--quiet")
    assert code == 0, err
    return path


def test_publish_reads_the_catalogues_own_column_names(tmp_path, capsys, store):
    assert sorted(Store.open(store).read().item_ids.tolist()) == list(range(100, 180))
    code, _, err = run(capsys, "publish", MODEL, tmp_path / "cat.parquet", "--store", store)
    assert code == 2 and err.count("\n") == 1 and "'item_id'" in err and "--item" in err


def test_report_of_a_store_is_a_summary_by_default_and_json_with_the_flag(capsys, store):
    code, out, _ = run(capsys, "report", store)
    assert code == 0 and out.splitlines()[0].startswith(f"{store}: generation 1")
    assert any(line.startswith("load ") for line in out.splitlines())
    code, out, _ = run(capsys, "report", store, "--json")
    assert code == 0 and json.loads(out)["live"] == 80


@pytest.mark.parametrize("items, expect", [(np.arange(500, 600), "none of the 100 rows"),
                                           (np.r_[np.arange(100, 110), np.arange(500, 590)], "only 10 of the 100")])
def test_a_log_that_barely_matches_the_store_is_warned_about(tmp_path, capsys, store, items, expect):
    pq.write_table(pa.table({"item_id": items}), tmp_path / "log.parquet")
    code, _, err = run(capsys, "report", store, "--interactions", tmp_path / "log.parquet", "--json")
    assert code == 0 and "warning" in err and expect in err


def test_a_publish_refused_after_its_allocation_leaves_no_generation_file(tmp_path, capsys, store):
    """A --max-per-prefix too large for an int64 key was refused after the generation's table and delta were
    written (found by tests/test_contract_store.py): the vocabulary is checked first, nothing is left."""
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    code, _, err = run(capsys, "publish", MODEL, tmp_path / "cat.parquet", "--store", store, "--item", "sku",
                       "--embedding", "vec", "--max-per-prefix", "99999999999999999999")
    assert code == 2 and err.count("\n") == 1 and "2**62" in err
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before


def test_a_failed_write_removes_the_uncommitted_generation(tmp_path, capsys, store, monkeypatch):
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    x = np.random.default_rng(1).normal(size=(90, 6)).astype(np.float32)
    pq.write_table(pa.table({"sku": np.arange(100, 190), "vec": list(x)}), tmp_path / "more.parquet")

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", "exports")

    monkeypatch.setattr("rqgmm.store.publish.write_exports", full)
    code, _, err = run(capsys, "publish", MODEL, tmp_path / "more.parquet", "--store", store, "--item", "sku",
                       "--embedding", "vec")
    assert code == 2 and err.count("\n") == 1 and "No space left" in err
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before


@pytest.mark.parametrize("suffix", [[], ["--no-suffix"]])
def test_a_cap_beyond_an_int64_key_is_refused_before_allocation(tmp_path, capsys, store, suffix):
    """New items under a cap of 1e20 overflowed the allocation (exit 1; found by tests/test_contract_store.py)."""
    x = np.random.default_rng(1).normal(size=(90, 6)).astype(np.float32)
    pq.write_table(pa.table({"sku": np.arange(100, 190), "vec": list(x)}), tmp_path / "more.parquet")
    target = store if not suffix else tmp_path / "plain"
    code, _, err = run(capsys, "publish", MODEL, tmp_path / "more.parquet", "--store", target, "--item", "sku",
                       "--embedding", "vec", "--max-per-prefix", "99999999999999999999", *suffix)
    assert code == 2 and err.count("\n") == 1 and "--max-per-prefix" in err and "2**62" in err


def test_a_refused_first_publish_removes_the_parent_folders_it_made(tmp_path, capsys, store):
    """--store deep/er/store refused after the lock was taken left deep/er behind (found by the contract cases)."""
    code, _, err = run(capsys, "publish", MODEL, tmp_path / "cat.parquet", "--store", tmp_path / "deep" / "er" / "s",
                       "--item", "sku", "--embedding", "vec", "--max-per-prefix", "1")
    assert code == 2 and err.count("\n") == 1
    assert not (tmp_path / "deep").exists()


def test_text_ids_into_a_store_of_integer_ids_are_refused(tmp_path, capsys, store):
    """A catalogue of string ids published into a store of int ids ended in an ArrowInvalid traceback (found by
    the contract cases)."""
    x = np.random.default_rng(1).normal(size=(5, 6)).astype(np.float32)
    pq.write_table(pa.table({"sku": [f"i{i}" for i in range(5)], "vec": list(x)}), tmp_path / "text.parquet")
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    code, _, err = run(capsys, "publish", MODEL, tmp_path / "text.parquet", "--store", store, "--item", "sku",
                       "--embedding", "vec")
    assert code == 2 and err.count("\n") == 1 and "text item ids" in err
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before
