"""Every file of a store is covered by its manifest: an edited, truncated or deleted file of any kind is refused.

``publish``, ``report STORE`` and ``check STORE`` each exit 2 with one line naming
the file and what differs, and change nothing; a store of the previous release
(whose manifest may lack a checksum) still loads, and its next publish records
the checksums it lacked.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rqgmm import cli
from rqgmm.store import generations
from rqgmm.store.generations import delta_file, export_dir, generation_file

FIXTURES = Path(__file__).parent / "fixtures" / "previous_release"
KINDS = {"generation": generation_file(1), "delta": delta_file(1), "lookup": f"{export_dir(1)}/lookup.parquet",
         "trie": f"{export_dir(1)}/trie.parquet", "vocab": f"{export_dir(1)}/vocab.txt"}


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != generations.LOCK}


def catalogue(path: Path, n: int, seed: int = 0) -> Path:
    x = np.random.default_rng(seed).normal(size=(n, 6)).astype(np.float32)
    pq.write_table(pa.table({"item_id": np.arange(n), "embedding": list(x)}), path)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("integrity")
    return {"model": FIXTURES / "model", "c1": catalogue(d / "c1.parquet", 60), "c2": catalogue(d / "c2.parquet", 70)}


@pytest.fixture
def store(tmp_path, capsys, inputs):
    path = tmp_path / "store"
    assert run(capsys, "publish", inputs["model"], inputs["c1"], "--store", path, "--quiet")[0] == 0
    return path


def damage(path: Path, how: str) -> None:
    if how == "deleted":
        path.unlink()
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:-7])
    else:  # edited in place: same size, one byte changed
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))


@pytest.mark.parametrize("how, expect", [("edited", "SHA-256"), ("truncated", "bytes"), ("deleted", "missing")])
@pytest.mark.parametrize("kind", list(KINDS))
def test_every_file_kind_damaged_is_refused_by_publish_report_and_check(capsys, inputs, store, kind, how, expect):
    target = store / KINDS[kind]
    damage(target, how)
    before = snapshot(store)
    for argv in (["publish", inputs["model"], inputs["c2"], "--store", store], ["report", store], ["check", store]):
        code, out, err = run(capsys, *argv)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("rqgmm: error: "), (argv, err)
        assert str(target) in lines[0] and expect in lines[0], lines[0]
        assert out == "" and snapshot(store) == before


def test_an_intact_store_checks_clean_and_a_vocab_line_appended_is_caught(capsys, inputs, store):
    code, out, _ = run(capsys, "check", store, "--json")
    assert code == 0 and len(json.loads(out)["verified"]) == 5 and json.loads(out)["unrecorded"] == []
    with open(store / KINDS["vocab"], "a") as f:
        f.write("<z_0>\n")
    code, _, err = run(capsys, "check", store)
    assert code == 2 and "vocab.txt" in err


def _drop_record(store: Path, name: str) -> None:
    """Remove one file's checksum from the manifest, as a manifest of an older release may lack it."""
    manifest = json.loads((store / "manifest.json").read_text())
    del manifest["generations"][0]["files"][name]
    manifest["checksum"] = generations._manifest_checksum(manifest)
    (store / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


def test_a_previous_release_store_loads_and_its_next_publish_records_every_checksum(tmp_path, capsys, inputs):
    store = tmp_path / "store"
    shutil.copytree(FIXTURES / "store", store)
    _drop_record(store, KINDS["vocab"])
    _drop_record(store, KINDS["lookup"])
    code, out, _ = run(capsys, "check", store, "--json")
    assert code == 0 and sorted(json.loads(out)["unrecorded"]) == sorted([KINDS["vocab"], KINDS["lookup"]])
    assert run(capsys, "report", store, "--json")[0] == 0
    (store / KINDS["lookup"]).unlink()  # unrecorded files are still required to exist
    assert run(capsys, "check", store)[0] == 2
    shutil.copy(FIXTURES / "store" / KINDS["lookup"], store / KINDS["lookup"])
    assert run(capsys, "publish", inputs["model"], inputs["c2"], "--store", store, "--quiet")[0] == 0
    code, out, _ = run(capsys, "check", store, "--json")
    assert code == 0 and json.loads(out)["unrecorded"] == [] and len(json.loads(out)["verified"]) == 10


@pytest.mark.parametrize("suffix", [".npy", ".parquet"])
def test_report_against_old_codes_applies_the_codes_validation(tmp_path, capsys, suffix):
    """``--against OLD`` goes through the codes table's own checks: negative codes are refused, not compared."""
    x = np.random.default_rng(0).normal(size=(120, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    old = tmp_path / f"old{suffix}"
    bad = np.full((120, 2), -1, dtype=np.int64)
    if suffix == ".npy":
        np.save(old, bad)
    else:
        pq.write_table(pa.table({"item_id": np.arange(120), "c1": bad[:, 0], "c2": bad[:, 1]}), old)
    new = FIXTURES / "codes.parquet"
    before = snapshot(tmp_path)
    code, out, err = run(capsys, "report", tmp_path / "x.npy", new, "--against", old, "--json")
    assert code == 2 and err.count("\n") == 1 and "--against" in err and "negative codes" in err and out == ""
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("folder", ["not-a-store", "empty"])
def test_a_refused_publish_leaves_no_lock_in_the_users_folder(tmp_path, capsys, inputs, folder):
    target = tmp_path / folder
    target.mkdir()
    if folder == "not-a-store":
        (target / "notes.txt").write_text("mine\n")
        argv, expect = [inputs["model"], inputs["c1"]], "not an rqgmm store"
    else:  # a valid folder, a refused catalogue: the first publish fails after taking the lock
        pq.write_table(pa.table({"item_id": [1, 2], "embedding": [[0.0] * 6, [float("nan")] * 6]}),
                       tmp_path / "nan.parquet")  # embeddings are read under the lock
        argv, expect = [inputs["model"], tmp_path / "nan.parquet"], "NaN"
    before = sorted(p.name for p in target.iterdir())
    code, _, err = run(capsys, "publish", *argv, "--store", target)
    assert code == 2 and expect in err
    assert sorted(p.name for p in target.iterdir()) == before  # no .lock, nothing else


def test_a_publish_removes_the_temporaries_a_killed_one_left(capsys, inputs, store):
    leftovers = [store / "exports" / ".gen-000002.tmp-x1y2", store / "generations" / ".gen-000002.parquet.tmp-ab",
                 store / ".manifest.json.tmp-cd"]
    leftovers[0].mkdir()
    (leftovers[0] / "lookup.parquet").write_bytes(b"partial")
    for p in leftovers[1:]:
        p.write_bytes(b"partial")
    assert run(capsys, "publish", inputs["model"], inputs["c2"], "--store", store, "--quiet")[0] == 0
    assert not any(p.exists() for p in leftovers)
    assert run(capsys, "check", store)[0] == 0
