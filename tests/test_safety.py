"""Data safety and the command-line contract: each break a new user found, as its own test.

Every refused run must exit 2 with one line on stderr, write nothing and leave
every input byte-identical; a valid run must give the right result.
"""

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_mixture, write_embeddings
from safetensors.torch import load_file, save_file

import rqgmm
from rqgmm import cli


def snapshot(root: Path) -> dict[str, str]:
    """Every path under root with a hash of its content ('dir' for directories)."""
    out = {}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = "dir" if p.is_dir() else hashlib.sha1(p.read_bytes()).hexdigest()
    return out


def run_cli(capsys, monkeypatch, cwd: Path, *argv) -> tuple[int, str, str]:
    monkeypatch.chdir(cwd)
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A directory with embeddings (npy, parquet) and a fitted model."""
    d = tmp_path_factory.mktemp("safety")
    X = make_mixture(n_per=40, k=6, d=8, seed=3)[0].astype(np.float32)
    write_embeddings(d, X, first_id=100)
    rqgmm.RQGMM(2, 6, random_state=0, progress=False).fit(X).save(d / "model")
    return d


@pytest.fixture
def work(store, tmp_path):
    """A private copy of the store, so a test may try to damage it."""
    for p in store.iterdir():
        target = tmp_path / p.name
        if p.is_dir():
            target.mkdir()
            for f in p.iterdir():
                (target / f.name).write_bytes(f.read_bytes())
        else:
            target.write_bytes(p.read_bytes())
    return tmp_path


def assert_refused(result, expect: str, before: dict, work: Path):
    code, out, err = result
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rqgmm: error: "), err
    assert expect in lines[0], lines[0]
    assert "Traceback" not in err and out == ""
    assert snapshot(work) == before  # nothing written, nothing changed
    return lines[0]


@pytest.mark.parametrize("argv, expect", [
    (["fit", "x.npy", "--levels", 1, "--codebook-size", 4, "--out", "x.npy"], "--out x.npy is the input x.npy"),
    (["encode", "model", "x.npy", "--out", "x.npy"], "--out x.npy is the input x.npy"),
    (["encode", "model", "x.parquet", "--out", "x.parquet"], "--out x.parquet is the input x.parquet"),
    (["fit", "x.npy", "--out", "."], "--out . contains the input x.npy"),
    (["encode", "model", "x.npy", "--out", "model/codes.parquet"], "lies inside the input model"),
    (["fit", "x.npy", "--out", "model", "--checkpoint", "model/ckpt"], "overlap"),
])
def test_an_output_never_replaces_an_input(capsys, monkeypatch, work, argv, expect):
    before = snapshot(work)
    assert_refused(run_cli(capsys, monkeypatch, work, *argv), expect, before, work)


def test_links_to_an_input_are_caught(capsys, monkeypatch, work):
    os.symlink("x.npy", work / "soft.npy")
    os.link(work / "x.npy", work / "hard.npy")
    before = snapshot(work)
    for argv in (["fit", "soft.npy", "--out", "x.npy"], ["encode", "model", "hard.npy", "--out", "x.npy"],
                 ["encode", "model", "x.npy", "--out", "soft.npy"]):
        assert_refused(run_cli(capsys, monkeypatch, work, *argv), "is the input", before, work)


@pytest.mark.parametrize("device, expect", [
    ("cuda:99" if torch.cuda.is_available() else "cuda", "CUDA device"),
    ("nonsense", "--device 'nonsense' is not a device name"),
])
def test_a_device_this_machine_lacks_is_exit_2(capsys, monkeypatch, work, device, expect):
    before = snapshot(work)
    result = run_cli(capsys, monkeypatch, work, "fit", "x.npy", "--device", device, "--out", "m")
    assert_refused(result, expect, before, work)


def test_chunk_size_is_refused_for_methods_that_do_not_stream(capsys, monkeypatch, work):
    before = snapshot(work)
    result = run_cli(capsys, monkeypatch, work, "fit", "x.npy", "--method", "rqvae", "--chunk-size", 100, "--out", "m")
    assert_refused(result, "--chunk-size applies to methods that stream", before, work)


def test_chunk_size_is_used_by_prqkmeans(capsys, monkeypatch, work):
    code, _, err = run_cli(capsys, monkeypatch, work, "fit", "x.npy", "--method", "prqkmeans", "--levels", 2,
                           "--codebook-size", 4, "--chunk-size", 7, "--quiet", "--out", "m")
    assert code == 0, err
    assert rqgmm.load(work / "m").chunk_size == 7


@pytest.mark.parametrize("out, expect", [
    ("afile/model", "is a file, not a directory"),
    ("afile", "exists and is a file"),
    ("notmine", "not an earlier rqgmm output"),
])
def test_a_bad_model_out_is_refused_before_fitting(capsys, monkeypatch, work, out, expect):
    (work / "afile").write_text("keep me")
    (work / "notmine").mkdir()
    (work / "notmine" / "thesis.tex").write_text("keep me too")
    before = snapshot(work)
    assert_refused(run_cli(capsys, monkeypatch, work, "fit", "x.npy", "--out", out), expect, before, work)


def test_the_working_directory_is_never_a_model_out(capsys, monkeypatch, work, tmp_path_factory):
    empty = tmp_path_factory.mktemp("empty-cwd")
    np.save(tmp_path_factory.mktemp("elsewhere") / "y.npy", np.ones((3, 2), np.float32))
    result = run_cli(capsys, monkeypatch, empty, "fit", str(work / "x.npy"), "--out", ".")
    assert_refused(result, "is or holds the working directory", {}, empty)


def test_an_earlier_model_is_replaced(capsys, monkeypatch, work):
    code, _, err = run_cli(capsys, monkeypatch, work, "fit", "x.npy", "--levels", 1, "--codebook-size", 3,
                           "--quiet", "--out", "model")
    assert code == 0, err
    assert rqgmm.load(work / "model").codebook_sizes == [3]


@pytest.mark.parametrize("codes, expect", [
    (np.full((240, 2), -1), "holds negative codes"),  # read_codes refuses them before the model is asked
    (np.full((240, 2), 6), "must lie in [0, 6)"),
    (np.zeros((240, 3), np.int64), "has 3 levels but the model has 2"),
    (np.zeros((7, 2), np.int64), "has 240 rows but"),
    (np.zeros((0, 2), np.int64), "holds no codes"),
    (np.zeros((240, 2), np.float32), "codes must be integers"),
])
def test_report_validates_its_codes(capsys, monkeypatch, work, codes, expect):
    np.save(work / "c.npy", codes)
    before = snapshot(work)
    result = run_cli(capsys, monkeypatch, work, "report", "x.npy", "c.npy", "--model", "model", "--json")
    assert_refused(result, expect, before, work)


def test_report_without_a_model_refuses_negative_codes(capsys, monkeypatch, work):
    np.save(work / "c.npy", np.full((240, 2), -3))
    before = snapshot(work)
    result = run_cli(capsys, monkeypatch, work, "report", "x.npy", "c.npy")
    assert_refused(result, "negative codes", before, work)


@pytest.mark.parametrize("damage, expect", [
    ("nan_rows", "NaN or Inf values in 2 of 240 rows"),
    ("wide", "has 9 features, but the model is expecting 8 features"),
    ("text", "is not a readable .npy array"),
])
def test_report_validates_its_embeddings_like_fit_and_encode(capsys, monkeypatch, work, damage, expect):
    X = np.load(work / "x.npy")
    np.save(work / "c.npy", rqgmm.load(work / "model").encode(X))
    if damage == "nan_rows":
        X[[3, 8], 0] = np.nan
        np.save(work / "e.npy", X)
    elif damage == "wide":
        np.save(work / "e.npy", np.ones((240, 9), np.float32))
    else:
        (work / "e.npy").write_text("not an array")
    before = snapshot(work)
    result = run_cli(capsys, monkeypatch, work, "report", "e.npy", "c.npy", "--model", "model")
    assert_refused(result, expect, before, work)


@pytest.mark.parametrize("tensor, value, expect", [
    ("level0.means", float("nan"), "tensor 'level0.means' holds NaN or Inf"),
    ("scale", 0.0, "tensor 'scale' is"),
    ("level1.variances", -1.0, "tensor 'variances' holds values <= 0"),
    ("level0.weights", 0.0, "tensor 'weights' holds values <= 0"),
])
def test_a_model_with_bad_content_is_refused_naming_file_and_tensor(capsys, monkeypatch, work, tensor, value, expect):
    tensors = load_file(str(work / "model" / "model.safetensors"))
    tensors[tensor] = torch.full_like(tensors[tensor], value)
    save_file(tensors, str(work / "model" / "model.safetensors"))
    before = snapshot(work)
    result = run_cli(capsys, monkeypatch, work, "encode", "model", "x.npy", "--out", "c.parquet")
    line = assert_refused(result, expect, before, work)
    assert f"{Path('model') / 'model.safetensors'}: " in line
    with pytest.raises(rqgmm.InputError, match="model.safetensors"):
        rqgmm.load(work / "model")


def test_codebook_sizes_must_match_the_tensors(work):
    import json

    config = json.loads((work / "model" / "config.json").read_text())
    config["effective_codebook_size"] = [6, 5]
    (work / "model" / "config.json").write_text(json.dumps(config))
    with pytest.raises(rqgmm.InputError, match=r"hold \[6, 6\] codewords per level, config.json says \[6, 5\]"):
        rqgmm.load(work / "model")


def test_every_file_written_follows_the_umask(tmp_path):
    X = make_mixture(n_per=20, k=3, d=4)[0]
    script = (
        "import os, sys, numpy as np; os.umask(0o022); from rqgmm import cli; "
        f"np.save('x.npy', np.load({str(tmp_path / 'src.npy')!r})); "
        "sys.exit(cli.main(['fit', 'x.npy', '--levels', '1', '--codebook-size', '3', '--quiet', '--out', 'm']) or "
        "cli.main(['encode', 'm', 'x.npy', '--out', 'c.parquet', '--quiet']))"
    )
    np.save(tmp_path / "src.npy", X)
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=True)
    for p in [tmp_path / "m", tmp_path / "m" / "config.json", tmp_path / "m" / "model.safetensors",
              tmp_path / "c.parquet"]:
        expected = 0o755 if p.is_dir() else 0o644
        assert stat.S_IMODE(p.stat().st_mode) == expected, p


def test_a_warning_is_one_clean_line_and_quiet_silences_it(tmp_path):
    np.save(tmp_path / "few.npy", np.repeat(np.eye(4, 6, dtype=np.float32), 30, axis=0))
    cmd = [sys.executable, "-m", "rqgmm", "fit", "few.npy", "--levels", "1", "--codebook-size", "8", "--out"]
    err = subprocess.run([*cmd, "m1"], cwd=tmp_path, capture_output=True, text=True, check=True).stderr
    warning = [line for line in err.splitlines() if "warning" in line]
    assert warning == ["rqgmm: warning: level 1: only 4 distinct vectors for 8 components; "
                       "using effective K=4 (codes stay in [0, 8))"], err
    assert "rqgmm/" not in err and ".py" not in err
    quiet = subprocess.run([*cmd, "m2", "--quiet"], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert quiet.stderr == ""


def test_npy_codes_of_a_parquet_input_are_refused_not_stripped_of_ids(capsys, monkeypatch, work):
    before = snapshot(work)
    result = run_cli(capsys, monkeypatch, work, "encode", "model", "x.parquet", "--out", "c.npy")
    assert_refused(result, "cannot keep the item_id column", before, work)
