"""The thresholds of make_shards' outcome-based judgement (tools/sharding/judge.py), on synthetic timings."""

from __future__ import annotations

import numpy as np
import pytest

import tools.sharding.judge as judge_module
from tools.sharding.judge import judge
from tools.sharding.probe import StreamFacts

T = 0.04                                               # 25 frames/s


def facts(n: int = 100, *, declared: float | None = None, packets_end: float | None = None,
          cut: str | None = None) -> StreamFacts:
    times = np.arange(n) * T
    end = n * T if packets_end is None else packets_end
    return StreamFacts("h264", 25.0, n * T if declared is None else declared, times, 0, end, cut)


def test_a_complete_clip_is_good() -> None:
    assert judge(facts(), np.arange(100) * T).problem is None


@pytest.mark.parametrize("lost, problem", [(2, None), (3, "damaged")])
def test_up_to_two_pictures_of_100_may_be_missing_in_the_middle(lost: int, problem: str | None) -> None:
    times = np.delete(np.arange(100) * T, range(40, 40 + lost))
    verdict = judge(facts(), times)
    assert (verdict.problem or "").startswith(problem or "") and bool(verdict.problem) == bool(problem)
    if not problem:
        assert "missing in the middle" in verdict.notes[0]


def test_one_percent_of_a_long_clip_may_be_missing() -> None:
    times = np.delete(np.arange(1000) * T, [100, 300, 500, 700, 900, 950, 960, 970, 980, 990])
    assert judge(facts(1000), times).problem is None
    assert judge(facts(1000), np.delete(times, [10])).problem.startswith("damaged")


@pytest.mark.parametrize("last_frames, problem", [(98, None), (97, "truncated")])
def test_decoding_may_stop_two_frames_early(last_frames: int, problem: str | None) -> None:
    verdict = judge(facts(), np.arange(last_frames) * T)
    assert (verdict.problem or "").startswith(problem or "") and bool(verdict.problem) == bool(problem)


def test_data_ending_before_the_declared_duration_or_inside_a_packet_is_truncated() -> None:
    assert judge(facts(declared=5.0), np.arange(100) * T).problem.startswith("truncated: the stream's data")
    assert judge(facts(cut="the last packet is incomplete"), np.arange(100) * T).problem.startswith("truncated")


def test_leading_pictures_an_open_gop_drops_are_allowed_up_to_16() -> None:
    assert judge(facts(), np.arange(16, 100) * T).problem is None
    assert judge(facts(), np.arange(17, 100) * T).problem.startswith("damaged: decoding starts")


def test_a_resampled_or_limited_clip_is_judged_by_what_applies() -> None:
    every_other = np.arange(0, 100, 2) * T           # --fps 12.5 keeps every other frame
    assert judge(facts(), every_other, resampled_interval=2 * T).problem is None
    assert judge(facts(), np.arange(30) * T, stopped_at_limit=True).problem is None      # --max-frames 30


def test_variable_frame_rate_needs_intervals_10_percent_off_the_median() -> None:
    vfr = judge_module.is_variable_frame_rate
    assert not vfr(np.arange(50) / (30000 / 1001), tick=1 / 90000)
    assert not vfr(np.round(np.arange(50) / 120 * 1000) / 1000, tick=1 / 1000)   # 8/9 ms ticks at 120 fps
    assert vfr(np.r_[np.arange(10) * T, 1.0 + np.arange(10) * T], tick=1 / 12800)
