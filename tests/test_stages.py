"""Stage seconds and peak RssAnon (issue 28, item 4)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from rqgmm.evaluate import stages
from rqgmm.evaluate.stages import StageMeter, measured, stage_words


def test_a_stage_that_allocates_shows_a_higher_peak_and_measured_is_a_no_op_without_a_meter():
    assert measured("x", lambda: 3) == 3
    with StageMeter(every_s=60) as meter:  # sampled at each stage's ends and where the work asks (no timing)

        def large():
            held = np.ones(64 << 20, np.uint8)  # 64 MiB touched
            meter.sample()
            return held.sum()

        measured("small", lambda: None)
        measured("large", large)
    table = meter.table()
    assert list(table) == ["small", "large"]
    assert table["large"]["peak_rss_anon_mb"] >= table["small"]["peak_rss_anon_mb"] + 48
    assert stage_words(table).startswith("small ") and "peak RssAnon" in stage_words(table)


def test_without_proc_only_seconds_are_kept(monkeypatch, tmp_path):
    monkeypatch.setattr(stages, "STATM", tmp_path / "absent")
    with StageMeter() as meter:
        meter.run("a", lambda: None)
    assert meter.table() == {"a": {"seconds": meter.seconds["a"]}} and "RssAnon" not in stage_words(meter.table())


def test_rss_anon_from_statm_equals_the_status_line():
    numpy_block = np.ones(8 << 20)  # 64 MiB of anonymous pages, so the figure is not a tiny one
    status = int(re.search(r"RssAnon:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024
    assert stages.rss_anon_mb() == pytest.approx(status, abs=2.0)  # the pages between the two reads
    del numpy_block
