"""siammae-train checks every option before any work: one line naming the option or file, exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from model.train_cli import main

BASE = ["--model", "vit_micro_patch16", "--input-size", "32", "--batch-size", "4", "--device", "cpu", "--max-steps", "2",
        "--torch-threads", "1"]

BAD_OPTIONS = {        # option values -> what the error line must say
    "lr-negative": (["--lr", "-1"], "--lr -1.0: must be a finite number above 0"),
    "lr-nan": (["--lr", "nan"], "--lr nan: must be a finite number above 0"),
    "blr-zero": (["--blr", "0"], "--blr 0.0"),
    "min-lr-nan": (["--min-lr", "nan"], "--min-lr nan"),
    "weight-decay": (["--weight-decay", "-0.1"], "--weight-decay -0.1"),
    "clip-grad": (["--clip-grad", "0"], "--clip-grad 0.0"),
    "warmup-epochs": (["--warmup-epochs", "inf"], "--warmup-epochs inf"),
    "warmup-steps": (["--warmup-steps", "-1"], "--warmup-steps -1"),
    "threads": (["--threads", "-1"], "--num-threads -1: must be at least 0"),           # the old name still works
    "prefetch": (["--prefetch-queue-depth", "0"], "--prefetch-queue-depth 0: must be at least 1"),
    "py-num-workers": (["--py-num-workers", "-1"], "--py-num-workers -1: must be at least 0"),
    "hw-decoder-load": (["--hw-decoder-load", "1.5"], "--hw-decoder-load 1.5"),
    "num-workers": (["--num-workers", "-1"], "--num-workers -1: must be at least 0"),
    "torch-threads": (["--torch-threads", "-2"], "--torch-threads -2"),
    "stop-at-step": (["--stop-at-step", "0"], "--stop-at-step 0"),
    "seed": (["--seed", "-1"], "--seed -1"),
    "input-size": (["--input-size", "0"], "--input-size 0"),
    "decoder-dim": (["--decoder-dim", "0"], "--decoder-embed-dim 0: must be at least 1"),
    "decoder-heads": (["--decoder-num-heads", "0"], "--decoder-num-heads 0"),
    "decoder-depth": (["--decoder-depth", "0"], "--decoder-depth 0"),
    "mask-ratio-nan": (["--mask-ratio", "nan"], "--mask-ratio nan: must be between 0 and 1"),
    "gap-range": (["--gap-min", "9", "--gap-max", "3"], "--gap-min 9 / --gap-max 3: need 1 <= --gap-min <= --gap-max"),
    "crop-scale": (["--crop-scale", "0.5,0.2"], "--crop-scale 0.5,0.2: need 0 < lo <= hi <= 1"),
    "source-prefetch": (["--source-prefetch", "-1"], "--source-prefetch -1: must be at least 1"),
    "heads-vs-width": (["--decoder-embed-dim", "30", "--decoder-num-heads", "4"], "--decoder-embed-dim 30 is not divisible by its 4 heads"),
    "bad-frame-limit": (["--bad-frame-limit", "1.5"], "--bad-frame-limit 1.5"),
    "batch-vs-epoch": (["--batch-size", "4096"], "--batch-size 4096: larger than one epoch of pairs (12"),
    "resume-from-missing": (["--resume-from", "nope.pt"], "--resume-from nope.pt: no such checkpoint file"),
    "overwrite-and-resume": (["--overwrite", "--resume"], "--overwrite"),
}


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def assert_one_line_exit_2(code: int, output: str, expected: str) -> None:
    assert code == 2, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], output
    assert "Traceback" not in output


@pytest.mark.parametrize("problem", sorted(BAD_OPTIONS))
def test_a_bad_option_is_one_line_and_exit_2_before_any_work(
        problem: str, synthetic_shards: Path, tmp_path: Path) -> None:
    extra, expected = BAD_OPTIONS[problem]
    out = tmp_path / "out"
    code, output = cli("--shards", str(synthetic_shards), "--out", str(out), *BASE, *extra)
    assert_one_line_exit_2(code, output, expected)
    assert not out.exists()


def test_out_pointing_to_a_file_is_refused(synthetic_shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "a-file"
    out.write_text("keep me")
    code, output = cli("--shards", str(synthetic_shards), "--out", str(out), *BASE)
    assert_one_line_exit_2(code, output, f"--out {out}: is a file")
    code, output = cli("--shards", str(synthetic_shards), "--out", str(out / "run"), *BASE)
    assert_one_line_exit_2(code, output, "is a file")
    assert out.read_text() == "keep me"


@pytest.mark.parametrize("content", ["{not json", '{"format": "siammae-clip-shards"}', "[]"])
def test_an_invalid_manifest_is_named(content: str, synthetic_shards: Path, tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    shutil.copytree(synthetic_shards, shards)
    (shards / "manifest.json").write_text(content)
    code, output = cli("--shards", str(shards), "--out", str(tmp_path / "out"), *BASE)
    assert_one_line_exit_2(code, output, f"{shards / 'manifest.json'}: not a valid shard manifest")


def test_the_loader_names_an_invalid_manifest_too(synthetic_shards: Path, tmp_path: Path) -> None:
    from pipeline.config import LoaderConfig
    from pipeline.frame_index import ShardError
    from pipeline.loader import build_pair_loader

    shards = tmp_path / "shards"
    shutil.copytree(synthetic_shards, shards)
    manifest = json.loads((shards / "manifest.json").read_text())
    del manifest["shards"]
    (shards / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match="manifest.json: not a valid shard manifest"):
        build_pair_loader(LoaderConfig(shards=shards, batch_size=4, kind="wds"))
