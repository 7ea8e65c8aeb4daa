"""siammae-ablate: the grid, the report's layout, and a resumable end-to-end run on tiny data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ablation import reference
from ablation.grid import Schedule, build_grid
from ablation.report import encoder_decoder_table, epochs_table, mask_ratio_table

FAST = Schedule(epochs=1, epoch_snapshots=(1, 2), batch_size=4, pairs_per_clip=2, input_size=32)


def test_all_grid_trains_the_shared_default_configuration_once():
    runs = build_grid("all", Schedule())
    names = [r.name for r in runs]
    assert len(names) == len(set(names))
    # 6 encoder/decoder runs + 3 extra mask ratios (0.95 is shared) + 1 long run for Table 1
    assert len(runs) == 6 + 3 + 1
    long_run = [r for r in runs if len(r.evaluate_at) > 1]
    assert len(long_run) == 1 and long_run[0].evaluate_at == (3, 5, 10, 25) and long_run[0].epochs == 25


def test_seeds_depend_on_the_run_not_on_the_grid():
    alone = {r.name: r.seed for r in build_grid("mask", Schedule(seed=3))}
    together = {r.name: r.seed for r in build_grid("all", Schedule(seed=3))}
    assert all(together[name] == seed for name, seed in alone.items())
    assert len(set(together.values())) == len(together)
    assert {r.seed for r in build_grid("mask", Schedule(seed=4))}.isdisjoint(alone.values())


def _fake_results(runs) -> dict:
    scores = {}
    for k, run in enumerate(runs):
        scores[run.name] = {"scores": {str(e): {"J&F-Mean": 0.5 + k / 100, "J-Mean": 0.4, "F-Mean": 0.6}
                                       for e in run.evaluate_at}}
    return {"runs": scores}


def test_tables_follow_the_report_layout_and_quote_its_numbers():
    runs = build_grid("all", Schedule())
    results = _fake_results(runs)
    encdec = encoder_decoder_table(results, runs, Schedule().epochs, Schedule().mask_ratio).splitlines()
    assert len(encdec) == 2 + len(reference.ENCODER_DECODER)
    siam_cross = next(line for line in encdec if line.startswith("| Siamese | Cross |"))
    assert "45.4 | 41.6 | 49.2" in siam_cross and "siamese-cross-m75-e60" in siam_cross
    masks = mask_ratio_table(results, runs, Schedule().epochs).splitlines()
    assert [line.split("|")[1].strip() for line in masks[2:]] == ["0.50", "0.75", "0.90", "0.95"]
    epochs = epochs_table(results, runs).splitlines()
    assert [line.split("|")[1].strip() for line in epochs[2:]] == ["3", "5", "10", "25"]
    assert "—" not in epochs[2].split("|")[2]


def _ablate(synthetic_root: Path, synthetic_shards: Path, out: Path, grid: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "ablation.cli", "--shards", str(synthetic_shards),
            "--davis-root", str(synthetic_root / "DAVIS"), "--out", str(out), "--grid", grid,
            "--model", "vit_micro_patch16", "--input-size", str(FAST.input_size),
            "--batch-size", str(FAST.batch_size), "--pairs-per-clip", str(FAST.pairs_per_clip),
            "--epochs", str(FAST.epochs), "--epoch-snapshots", "1,2", "--device", "cpu",
            "--eval-size", "64x96"]                 # the default protocol at the tiny frames' own size
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.slow
def test_epochs_grid_runs_end_to_end_and_resumes_without_retraining(synthetic_root, synthetic_shards, tmp_path):
    out = tmp_path / "grid"
    first = _ablate(synthetic_root, synthetic_shards, out, "epochs")
    assert first.returncode == 0, first.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    (run_name,) = results["runs"]
    scores = results["runs"][run_name]["scores"]
    assert set(scores) == {"1", "2"}
    assert all(0.0 <= s["J&F-Mean"] <= 1.0 for s in scores.values())
    assert set(results["baselines"]) == {"random_init_0", "random_init_1", "random_init_2", "pixels"}
    hidden = scores["2"]["hidden_patch"]               # view 1, beside copying f1 and the mean
    assert 0 < hidden["trained"] and 0 < hidden["copy_f1"] and 0.9 < hidden["mean"] <= 1.0
    assert results["propagation"]["protocol"] == "cropmae" and results["propagation"]["fixed_size"] == [64, 96]
    report = (out / "report.md").read_text()
    assert "Table 1" in report and f"{100 * scores['2']['J&F-Mean']:.1f}" in report
    best_random = max(v["J&F-Mean"] for k, v in results["baselines"].items() if k.startswith("random_init"))
    assert f"{100 * (scores['2']['J&F-Mean'] - best_random):+.1f}" in report
    assert f"{hidden['trained']:.3f} / {hidden['copy_f1']:.3f}" in report
    for figure in results["runs"][run_name]["figures"].values():
        assert (out / figure).is_file()

    checkpoint = out / run_name / "checkpoints" / "latest.pt"
    stamp = checkpoint.stat().st_mtime_ns
    second = _ablate(synthetic_root, synthetic_shards, out, "epochs")
    assert second.returncode == 0, second.stderr[-2000:]
    assert "training" not in second.stderr and "evaluating" not in second.stderr
    assert checkpoint.stat().st_mtime_ns == stamp


def test_missing_shards_is_a_one_line_error(tmp_path, synthetic_root):
    argv = [sys.executable, "-m", "ablation.cli", "--shards", str(tmp_path / "nope"),
            "--davis-root", str(synthetic_root / "DAVIS"), "--out", str(tmp_path / "o")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert "nope" in done.stderr and "manifest.json" in done.stderr
    assert not (tmp_path / "o").exists()
