"""benchmarks/train_step_bench.py runs on a CPU at toy size and reports step time, pairs/s and FLOPs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from click.testing import CliRunner

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "train_step_bench.py"


def test_the_step_benchmark_reports_time_throughput_and_flops(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("train_step_bench", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "result.json"
    result = CliRunner().invoke(bench.main, ["--device", "cpu", "--input-size", "32", "--batch-size", "2",
                                             "--steps", "2", "--warmup", "1", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["tensors_on_device"]["pairs_per_s"] > 0
    assert data["flops_per_step"] > 0
    assert "with_loader" not in data and "mfu" not in data      # no shards given, no known GPU peak
