"""`rqgmm benchmark` is `rqgmm evaluate` on MovieLens: end to end on a small slice, and its refusals."""

import json

import numpy as np
import pytest

from rqgmm.cli import main


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "out"
    code = main(["benchmark", "--quick", "--max-items", "200", "--embedder", "hashing-32", "--out", str(out), "--quiet"])
    assert code == 0
    return out


def test_outputs_keep_their_names(bench_dir):
    names = {p.name for p in bench_dir.iterdir()}
    assert {"results.json", "report.md"} <= names
    pngs = [n for n in names if n.endswith(".png")]
    assert any(n.startswith("differences_") for n in pngs) and any(n.startswith("em_history_") for n in pngs)
    records = json.loads((bench_dir / "results.json").read_text())["records"]
    full = all(u >= 0.999 for r in records if r["kind"] == "tokenizer" for u in r["utilization"])
    assert any(n.startswith("utilization_") for n in pngs) != full  # a flat plot at 1.0 is not drawn


def test_both_regimes_every_variant_and_slice_in_results(bench_dir):
    records = json.loads((bench_dir / "results.json").read_text())["records"]
    ctr = [r for r in records if r["kind"] == "ctr"]
    labels = {"none", "embedding", *(f"{v} ({m})" for v in ("ids", "ids+embedding") for m in ("rqgmm", "rqkmeans"))}
    assert {(r["regime"], r["label"]) for r in ctr} == {(g, v) for g in ("side fields", "content only") for v in labels}
    assert all(r["split"] == "time" and r["backbone"] == "fnn" for r in ctr)
    assert all(np.isfinite(r["auc"]) and set(r["slices"]) == {"cold", "tail", "torso", "head"} for r in ctr)
    tok = [r for r in records if r["kind"] == "tokenizer"]
    assert {r["tokenizer"] for r in tok} == {"rqgmm", "rqkmeans"} and all(r["n_items"] == 200 for r in tok)
    report = (bench_dir / "report.md").read_text()
    assert "regime: content only" in report and "ids+embedding (rqgmm) − embedding" in report


def test_existing_foreign_directory_is_refused(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    code = main(["benchmark", "--quick", "--out", str(tmp_path)])
    assert code == 2
    assert "is a directory with no results.json: not an earlier rqgmm output" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_unknown_dataset_is_refused(tmp_path, capsys):
    assert main(["benchmark", "--dataset", "netflix", "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith("rqgmm: error: unknown dataset 'netflix'")
    assert not (tmp_path / "out").exists()
