"""Issue 28: embedding columns read batch by batch, and the user sample of ``--sample-users``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rqgmm.cli import main
from rqgmm.data.planted import PlantedConfig, write_planted
from rqgmm.errors import InputError
from rqgmm.evaluate import inputs
from rqgmm.evaluate.config import config_from
from rqgmm.evaluate.inputs import check_inputs, read_table, sampled_users

SMALL = PlantedConfig(rows=6_000, items=300, users=60, topics=4, widths=(8, 4), row_group=1_000, seed=1)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return write_planted(SMALL, tmp_path_factory.mktemp("planted"))


def _check(paths, **options):
    config = config_from(dict(embedding=("embedding", "embedding_1"), quick=True, **options))
    return check_inputs(read_table(str(paths[0]), "i"), read_table(str(paths[1]), "it"), config)


def test_streamed_vectors_equal_the_frame_path_and_leave_the_items_frame(planted, monkeypatch):
    monkeypatch.setattr(inputs, "ITEM_BATCH_ROWS", 7)
    data = _check(planted)
    import pyarrow.parquet as pq
    frame = pq.read_table(planted[1]).to_pandas()
    for column in ("embedding", "embedding_1"):
        assert np.array_equal(data.vectors[column], np.stack(frame[column].to_numpy()).astype(np.float32))
        assert column not in data.items.columns


def test_the_sample_is_a_fixed_subset_of_users_and_every_item_stays(planted):
    whole, half = _check(planted), _check(planted, sample_users=0.5)
    assert len(half.items) == len(whole.items) and all(len(v) == SMALL.items for v in half.vectors.values())
    assert 0 < len(half.interactions) < len(whole.interactions) and "fraction 0.5" in half.sample
    assert len(_check(planted, sample_users=0.5).interactions) == len(half.interactions)
    import pyarrow as pa
    users = pa.array(np.arange(1000))
    assert np.array_equal(sampled_users(users, 0.3), sampled_users(users.slice(0), 0.3))
    assert 0.2 < sampled_users(users, 0.3).mean() < 0.4
    assert not sampled_users(users, 0.1)[~sampled_users(users, 0.3)].any()  # nested: a larger F keeps more


@pytest.mark.parametrize("fraction", [0.0, 1.5, -1.0])
def test_a_fraction_outside_0_1_is_refused(fraction):
    with pytest.raises(InputError, match=r"--sample-users must be a number in \(0, 1\]"):
        config_from(dict(sample_users=fraction))


def test_a_sample_that_leaves_too_little_exits_2_in_one_line(planted, tmp_path, capsys):
    code = main(["evaluate", str(planted[0]), "--items", str(planted[1]), "--embedding", "embedding",
                 "--sample-users", "1e-9", "--out", str(tmp_path / "out"), "--quick", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--sample-users 1e-09 left 0 users, 0 of 6,000 rows" in err[0], err


def test_the_scale_benchmark_reports_every_stage(tmp_path, capsys):
    from rqgmm.bench import scale_memory

    result = scale_memory.main(["--rows", "3000", "--items", "200", "--users", "40", "--codebook-size", "4",
                                "--out", str(tmp_path)])
    assert set(result["seconds"]) == set(scale_memory.STAGES) == set(result["peak_mb"])
    assert result["rows"] == 3000 and result["ratio"] > 0 and (tmp_path / "scale_memory.json").is_file()
    assert "read+encode" in capsys.readouterr().out
    again = scale_memory.main(["--rows", "3000", "--items", "200", "--users", "40", "--codebook-size", "4",
                               "--out", str(tmp_path), "--sample-users", "0.5"])
    assert again["rows"] < 3000  # the log is reused, the sample read from it
    alone = scale_memory.main(["--rows", "3000", "--items", "200", "--users", "40", "--codebook-size", "4",
                               "--out", str(tmp_path), "--no-ctr", "--trace", str(tmp_path / "trace.txt")])
    records = json.loads((tmp_path / "evaluate" / "results.json").read_text())["records"]
    assert alone["ctr"] is False and not [r for r in records if r["kind"] in ("ctr", "comparison")]
    assert [r for r in records if r["kind"] == "diagnostic"] and "diagnostics" in alone["peak_mb"]
    assert "Split(" in (tmp_path / "trace.txt").read_text()  # each log line with the peak until the next


def test_a_log_that_cannot_fit_is_refused_before_reading_naming_the_need_and_the_sample(planted, monkeypatch):
    monkeypatch.setattr(inputs, "available_bytes", lambda: 100_000)
    with pytest.raises(InputError, match=r"needs about 0\.3 MB of host memory \(6,000 rows at 17 bytes.*"
                                         r"and 0\.1 MB is free; pass --sample-users 0\.3 or less"):
        _check(planted, categorical=("category",))


def test_split_labels_are_checked_a_chunk_at_a_time_like_the_whole_gather(monkeypatch):
    """The labels each split part holds, gathered through an int32 order in small chunks, equal np.unique's."""
    monkeypatch.setattr("rqgmm.ctr.log.REMAP_CHUNK", 7)
    from rqgmm.evaluate.inputs import _labels_held
    rng = np.random.default_rng(0)
    labels = (rng.random(1000) < 0.02).astype(np.int8)
    order = rng.permutation(1000).astype(np.int32)
    for rows in (slice(0, 800), slice(800, 900), slice(900, 1000), slice(0, 3)):
        np.testing.assert_array_equal(_labels_held(labels, order, rows), np.unique(labels[order[rows]]))
