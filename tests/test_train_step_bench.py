"""benchmarks/train_step_bench.py runs on a CPU at toy size and reports step time, pairs/s and FLOPs."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from benchmarks import train_step_bench


def test_the_step_benchmark_reports_time_throughput_and_flops(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    result = CliRunner().invoke(train_step_bench.main, ["--device", "cpu", "--input-size", "32", "--batch-size", "2",
                                                        "--steps", "2", "--warmup", "1", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["tensors_on_device"]["pairs_per_s"] > 0
    assert data["flops_per_step"] > 0 and data["torch_threads"] >= 1
    assert "with_loader" not in data and "mfu" not in data      # no shards given, no known GPU peak
