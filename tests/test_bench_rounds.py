"""siammae-bench's rounds: rows interleave A B C A B C, and every ratio is taken within a round, then
its median, so a machine that slows down mid-run moves the pairs/s but not the ratios."""

from __future__ import annotations

import pytest

from benchmarks.bench_run import Measured
from benchmarks.rounds import format_table, per_round_ratios, run_rounds, summarise


def measured(pairs_per_s: float, bytes_per_pair: float | None = None) -> Measured:
    return Measured(pairs_per_s=pairs_per_s, bytes_per_pair=bytes_per_pair, pairs=10, seconds=1.0)


def test_rows_run_interleaved_once_per_round() -> None:
    calls: list[str] = []

    def runner(name: str):
        def run() -> Measured:
            calls.append(name)
            return measured(1.0)
        return run

    results = run_rounds({n: runner(n) for n in ("a", "b", "c")}, rounds=3)
    assert calls == ["a", "b", "c"] * 3
    assert {n: len(ms) for n, ms in results.items()} == {"a": 3, "b": 3, "c": 3}


def test_ratios_are_per_round_medians_not_ratios_of_medians() -> None:
    # the machine halves its speed in round 2 and is at 80% in round 3; dali is 1.5x, 3x, 3x naive
    results = {"naive": [measured(100), measured(50), measured(80)],
               "jpeg_folders": [measured(200), measured(100), measured(160)],
               "dali_cpu": [measured(150, 40.0), measured(150, 40.0), measured(240, 40.0)],
               "ceiling": [measured(300), measured(150), measured(240)]}
    rows = summarise(results, own_jpeg_bytes=40.0)
    dali = rows["dali_cpu"]
    assert dali["pairs_per_s"] == 150 and (dali["pairs_per_s_min"], dali["pairs_per_s_max"]) == (150, 240)
    assert dali["vs_naive_rounds"] == [1.5, 3.0, 3.0]
    assert dali["vs_naive"] == 3.0                       # the ratio of the medians would say 150 / 80 = 1.875
    assert dali["vs_folders"] == 1.5
    assert dali["efficiency"] == 1.0                     # 0.5, 1.0, 1.0: never above 100% by drift alone
    assert dali["bytes_vs_own_jpeg"] == 1.0
    assert rows["naive"]["vs_naive_rounds"] == [1.0, 1.0, 1.0]
    assert rows["ceiling"]["bytes_per_pair"] is None
    table = format_table(rows)
    assert "150.0-240.0" in table and "x folders" in table


def test_rows_without_a_reference_have_no_ratio() -> None:
    rows = summarise({"dali_gpu": [measured(1000)] * 3}, own_jpeg_bytes=1.0)
    assert rows["dali_gpu"]["efficiency"] is None and rows["dali_gpu"]["vs_naive"] is None


def test_per_round_ratios_need_the_same_rounds() -> None:
    with pytest.raises(ValueError, match="rounds differ"):
        per_round_ratios([measured(1.0)] * 3, [measured(1.0)] * 2)


def test_each_loader_row_is_held_against_its_own_ceiling_and_a_row_above_it_is_flagged() -> None:
    results = {"dali_cpu": [measured(90), measured(110)], "ceiling": [measured(100), measured(100)],
               "dali_cpu_parallel": [measured(80), measured(80)], "ceiling_parallel": [measured(100)] * 2,
               "source": [measured(5000)] * 2}
    rows = summarise(results, own_jpeg_bytes=1.0)
    assert rows["dali_cpu"]["efficiency_rounds"] == [0.9, 1.1] and rows["dali_cpu"]["over_ceiling_rounds"] == 1
    assert rows["dali_cpu_parallel"]["efficiency_rounds"] == [0.8, 0.8]        # its own ceiling, not dali_cpu's
    assert rows["source"]["efficiency"] is None                                  # no decode: nothing bounds it
    table = format_table(rows)
    assert "100.0%!" in table and "above its own ceiling" in table
