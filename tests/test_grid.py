"""The evaluate grid: finished runs kept and resumed after SIGKILL, other settings refused, and the runs
spread over 2 gloo ranks (torchrun) giving the records of one process, a dying rank leaving its runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rqgmm.cli import main
from rqgmm.evaluate.config import config_from, run_settings
from rqgmm.evaluate.grid import deal, fingerprint
from synthetic import write_synthetic

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE",
       "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
# 2 tokenizer fits and 2 regimes x 2 seeds x 3 variants = 12 CTR runs
GRID = ["--categorical", "brand", "--embedding", "text_emb", "--methods", "rqkmeans", "--levels", "2",
        "--codebook-size", "4", "--variants", "none,embedding,ids", "--backbones", "fnn", "--seeds", "2",
        "--quick", "--quiet"]
N_RUNS = 14


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> list[str]:
    rows, items = write_synthetic(tmp_path_factory.mktemp("log"))
    return [str(rows), "--items", str(items)]


@pytest.fixture(scope="module")
def clean(log, tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("clean") / "out"
    assert main(["evaluate", *log, "--out", str(out), *GRID]) == 0
    return records(out)


def records(out: Path) -> list[dict]:
    return json.loads((out / "results.json").read_text())["records"]


def comparable(recs: list[dict]) -> list[dict]:
    """Records without their timings."""
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in recs]


def stored(out: Path) -> dict[str, int]:
    """Each finished run's record file and its modification time (ns); not the ``.NAME.tmp-*.json`` a rank
    killed while writing may leave (rqgmm.files.atomic: nothing can remove it)."""
    return {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")
            if p.name != "grid.json" and not p.name.startswith(".")}


def wait_for_runs(out: Path, n: int, process: subprocess.Popen, limit_s: float = 120) -> None:
    end = time.monotonic() + limit_s
    while len([p for p in (out / "runs").glob("ctr-*.json")] if (out / "runs").is_dir() else []) < n:
        assert process.poll() is None, process.stderr.read()[-2000:] if process.stderr else process.returncode
        assert time.monotonic() < end, "no run finished in time"
        time.sleep(0.005)


def test_sigkill_mid_grid_then_rerun_keeps_finished_runs_and_equals_a_clean_run(log, clean, tmp_path):
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "rqgmm", "evaluate", *log, "--out", str(out), *GRID],
                               cwd=ROOT, env=ENV, stderr=subprocess.PIPE, text=True)
    wait_for_runs(out, 4, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = stored(out)
    assert 4 <= len(before) < N_RUNS and not (out / "results.json").exists()
    (out / "notes.txt").write_text("mine")
    assert main(["evaluate", *log, "--out", str(out), *GRID]) == 0
    after = stored(out)
    assert len(after) == N_RUNS
    assert {k: after[k] for k in before} == before  # finished runs kept as they were, not run again
    assert comparable(records(out)) == comparable(clean)
    assert (out / "notes.txt").read_text() == "mine"  # a file evaluate did not write stays


def test_other_settings_are_refused_in_one_line_and_nothing_is_written(log, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["evaluate", *log, "--out", str(out), *GRID[:-1], "--seeds", "1", "--variants", "none"]) == 0
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    capsys.readouterr()
    code = main(["evaluate", *log, "--out", str(out), *GRID[:-1], "--seeds", "1", "--variants", "none",
                 "--levels", "3"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err == (f"rqgmm: error: --out {out} holds runs made with other settings (levels: 2 there, 3 here); "
                   "pass a new --out, or the settings of those runs to resume them\n")
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_the_grid_axes_leave_the_settings_alone_and_every_other_option_changes_them():
    base = dict(embedding=["e"], quick=True)
    same = run_settings(config_from(base))
    assert run_settings(config_from({**base, "seeds": 3, "backbones": "fnn", "methods": "rqgmm",
                                     "variants": "none", "device": "cpu:0"})) == same
    for change in ({"levels": 3}, {"codebook_size": 64}, {"quick": False}, {"tokenize": "per-modality"},
                   {"categorical": "brand"}):
        assert fingerprint(run_settings(config_from({**base, **change}))) != fingerprint(same), change


def test_deal_gives_every_job_to_exactly_one_rank_whatever_the_order():
    keys = [f"ctr-{i:03d}" for i in range(11)]
    shares = [deal(keys, rank, 3) for rank in range(3)]
    assert sorted(k for share in shares for k in share) == sorted(keys)
    assert [len(s) for s in shares] == [4, 4, 3]
    assert shares == [deal(list(reversed(keys)), rank, 3) for rank in range(3)]


def torchrun(log: list[str], out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             "-m", "rqgmm", "evaluate", *log, "--out", str(out), *GRID],
                            cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_two_gloo_ranks_give_the_records_of_one_process_and_a_dying_rank_leaves_its_runs(log, clean, tmp_path):
    """torchrun, 2 ranks: one is killed mid-grid (non-zero exit, finished runs whole); the same command again
    runs the rest over both ranks and gives the records of one process."""
    out = tmp_path / "out"
    process = torchrun(log, out)
    wait_for_runs(out, 2, process)
    workers = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    os.kill(int(workers[-1]), signal.SIGKILL)
    _, err = process.communicate(timeout=300)
    assert process.returncode != 0
    before = stored(out)
    assert 2 <= len(before) < N_RUNS and not (out / "results.json").exists()
    for name in before:  # every record left is whole
        assert json.loads((out / "runs" / name).read_text())["record"]["kind"] in ("tokenizer", "ctr")
    process = torchrun(log, out)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    after = stored(out)
    assert len(after) == N_RUNS and {k: after[k] for k in before} == before
    assert comparable(records(out)) == comparable(clean)
    resumed = {json.loads((out / "runs" / name).read_text())["rank"] for name in set(after) - set(before)}
    assert resumed == {0, 1}  # both ranks ran some of the rest
