"""The end-to-end demo behind `make demo`: synthetic clips → shards → training → evaluation.

Every step is skipped or resumed when its output already exists, so a second run is fast.
Run by path: `python tools/demo.py [--fresh]`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import click

from model.run_folder import start_fields
from siammae_common.cli_types import COUNT, OneLineCommand

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


# The demo's synthetic set: 100 short training clips (20 classes x 5) rather than 12 long ones, so a
# few minutes of training do not memorise a dozen textures; 160x120 training frames, so that 64-px
# crops see objects at about the scale they have in the DAVIS frames at native size; 10 DAVIS
# sequences rather than 3, since per-sequence J&F differs by up to 0.2 between extractors.
SYNTHETIC_OPTIONS = ["--davis-seqs", "10", "--classes", "20", "--clips", "5", "--frames", "40-80",
                     "--size", "160x120", "--object-size", "0.25", "--davis-object-size", "0.12"]


# The demo's training recipe. The default schedule (blr 1.5e-4 -> lr 1.9e-5 at batch 32, 40 warmup
# epochs) is made for long runs; a short CPU run needs a high peak and a short warmup.
TRAIN_OPTIONS = ["--model", "vit_micro_patch16", "--input-size", "64", "--batch-size", "32", "--device", "cpu",
                 "--lr", "1e-3", "--warmup-steps", "50", "--pairs-per-clip", "8", "--log-every", "100"]


def reset_stale_outputs(stamp: Path, wanted: dict, data: Path, shards: Path, run_dir: Path) -> None:
    """Remove what an earlier demo made with other options, so old and new outputs never mix:
    other synthetic options invalidate everything, other training options only the run."""
    old = json.loads(stamp.read_text()) if stamp.is_file() else {}
    if old.get("synthetic") != wanted["synthetic"]:
        for path in (data, shards, run_dir):
            shutil.rmtree(path, ignore_errors=True)
    elif old.get("train") != wanted["train"]:
        shutil.rmtree(run_dir, ignore_errors=True)


def start_options(run_dir: Path) -> list[str]:
    """start_fields as siammae-train options (--resume, --resume-from PATH or --overwrite), so a rerun
    never stops at 'no checkpoint'."""
    (name, value), = start_fields(run_dir).items()
    flag = "--" + name.replace("_", "-")
    return [flag] if value is True else [flag, str(value)]


def verdict(metrics_path: Path) -> str:
    """One line: does the trained encoder beat the untrained one (and raw pixels) on J&F?"""
    scores = {name: m["J&F-Mean"] for name, m in json.loads(metrics_path.read_text()).items()}
    trained, random_init, pixels = scores["trained"], scores["random_init"], scores["pixels"]
    beats = "beats" if trained > random_init else "does NOT beat"
    return (f"J&F: the trained encoder ({trained:.3f}) {beats} the random-init encoder ({random_init:.3f}) "
            f"by {trained - random_init:+.3f}; raw pixels: {pixels:.3f}")


def run_step(title: str, argv: list[str]) -> None:
    """Run one stage as its own process, exactly as a user would type it; stop the demo if it fails."""
    click.secho(f"\n== {title}", bold=True, err=True)
    click.echo("$ " + " ".join(str(a) for a in argv), err=True)
    completed = subprocess.run([str(a) for a in argv], check=False, cwd=ROOT)
    if completed.returncode != 0:
        raise click.ClickException(f"demo step '{title}' failed with exit status {completed.returncode}")


@click.command(cls=OneLineCommand)
@click.option("--data", type=click.Path(path_type=Path), default=ROOT / "data" / "synthetic",
              show_default=True, help="Where the synthetic video set is written.")
@click.option("--shards", type=click.Path(path_type=Path), default=ROOT / "shards" / "demo",
              show_default=True, help="Where the demo's shards are written.")
@click.option("--run", "run_dir", type=click.Path(path_type=Path), default=ROOT / "runs" / "demo",
              show_default=True, help="Training run folder (checkpoints, logs, evaluation).")
@click.option("--steps", type=COUNT, default=1500, show_default=True,
              help="Training steps (1500: about 2-3 minutes on 2 CPU cores).")
@click.option("--loader", type=click.Choice(["dali", "wds"]), default="dali", show_default=True)
@click.option("--fresh", is_flag=True, help="Delete the demo's outputs first and start over.")
def main(data: Path, shards: Path, run_dir: Path, steps: int, loader: str, fresh: bool) -> None:
    """Synthetic clips → shards → SiamMAE training → label-propagation evaluation, on CPU."""
    if fresh:
        for path in (data, shards, run_dir):
            shutil.rmtree(path, ignore_errors=True)
    py = sys.executable
    stamp = ROOT / "runs" / "demo-options.json"
    wanted = {"synthetic": SYNTHETIC_OPTIONS, "train": [*TRAIN_OPTIONS, "--max-steps", str(steps), "--loader", loader]}
    reset_stale_outputs(stamp, wanted, data, shards, run_dir)
    if not (data / "UCF-101").is_dir():
        run_step("1/4 synthetic video set", [py, "tools/make_synthetic.py", data, *SYNTHETIC_OPTIONS])
    else:
        click.echo(f"\n== 1/4 synthetic video set: {data} exists, kept", err=True)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(wanted, indent=1))
    run_step("2/4 shards (resumes; finished shards are kept)",
             [py, "tools/make_shards.py", data, "--out", shards])
    run_step("3/4 SiamMAE training (a rerun resumes from its checkpoint)",
             [BIN / "siammae-train", "--shards", shards, "--out", run_dir, *wanted["train"], *start_options(run_dir)])
    checkpoint, metrics = run_dir / "checkpoints" / "latest.pt", run_dir / "eval" / "metrics.json"
    if metrics.is_file() and metrics.stat().st_mtime > checkpoint.stat().st_mtime:
        click.echo(f"\n== 4/4 evaluation: {metrics} is newer than the checkpoint, kept", err=True)
    else:
        run_step("4/4 label propagation on the synthetic DAVIS set: trained vs random init vs pixels",
                 [BIN / "siammae-eval", "compare", "--checkpoint", checkpoint, "--davis-root", data / "DAVIS",
                  "--out", run_dir / "eval"])
    click.secho(f"\n{verdict(metrics)}", bold=True, err=True)
    click.secho(f"Demo finished. Run folder: {run_dir}  (report: {run_dir / 'eval' / 'report.md'}; "
                f"tensorboard --logdir {run_dir})", bold=True, err=True)


if __name__ == "__main__":
    main()
