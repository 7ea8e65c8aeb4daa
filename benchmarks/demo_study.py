"""The demo's study: train one recipe for several seeds and measure what it learned, on DAVIS-layout sets
it never trained on, against untrained encoders of the same architecture (seeds 0, 1, 2) and raw pixels.

    python benchmarks/demo_study.py --shards shards/demo --davis held-out=data/synthetic/DAVIS \
        --out runs/demo-study --name demo --sizes 64x112,128x224,native -- <siammae-train options>

Per seed: view 1 (the hidden-patch error of the model, of copying f1 and of the mean) and label
propagation (J&F) at each evaluation size. Results are kept in OUT/results.json, so a rerun (or another
recipe into the same OUT) only computes what is missing; baselines are shared by every recipe of the
same architecture. The table printed at the end is the crossover table: trained - best random init as
the evaluation grid grows.
"""

from __future__ import annotations

import hashlib
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import click
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:                      # run by path from anywhere
    sys.path.insert(0, str(ROOT))

from evaluation.davis import run_davis
from evaluation.features import checkpoint_features
from evaluation.hidden_patch import PairSpec, held_out_pairs, hidden_patch_errors
from evaluation.report import write_json_atomic
from evaluation.settings import protocol_settings
from model.checkpoint import load_model
from siammae_common.cli_types import NATURAL, OneLineCommand, pixel_size
from siammae_common.console import info
from tools.demo_eval import UNTRAINED_SEEDS, make_extractor


def eval_settings(size: str):
    """The cropmae protocol at a fixed HxW input, or at the frames' own size ('native')."""
    if size == "native":
        return protocol_settings(fixed_size=None, size_multiple=16)
    return protocol_settings(fixed_size=pixel_size(size, "--sizes"))


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its waited-for children so far."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def jf(extractor, davis_root: Path, out: Path, size: str) -> float:
    """J&F-Mean of one extractor on one set at one size (the cropmae protocol)."""
    return run_davis(extractor, davis_root, out, eval_settings(size), workers=1)["J&F-Mean"]


def train(shards: Path, run_dir: Path, seed: int, options: list[str]) -> dict:
    """Train one seed with siammae-train (a separate process, as a user runs it); its wall and CPU time."""
    if (run_dir / "checkpoints" / "latest.pt").is_file() and (run_dir / "done").is_file():
        return json.loads((run_dir / "done").read_text())
    start, cpu = time.perf_counter(), cpu_seconds()
    argv = [str(Path(sys.executable).parent / "siammae-train"), "--shards", str(shards), "--out", str(run_dir),
            "--seed", str(seed), "--device", "cpu", "--overwrite", "--recon-every", "100000", *options]
    subprocess.run(argv, check=True, cwd=ROOT)
    timing = {"train_wall_s": time.perf_counter() - start, "train_cpu_s": cpu_seconds() - cpu}
    (run_dir / "done").write_text(json.dumps(timing))
    return timing


def baselines(results: dict, config, sets: dict[str, Path], sizes: list[str], out: Path, save) -> dict:
    """J&F of random inits (UNTRAINED_SEEDS) and pixels per set and size, computed once per architecture."""
    key = json.dumps(config.to_dict(), sort_keys=True)
    table = results["baselines"].setdefault(key, {})
    tag = f"{config.name}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    for set_name, root in sets.items():
        for size in sizes:
            cell = table.setdefault(f"{set_name}@{size}", {})
            # the demo's own extractors, under this study's names (results.json keeps them)
            for name, features in [*((f"random-{s}", f"random-init-{s}") for s in UNTRAINED_SEEDS),
                                   ("pixels", "pixels")]:
                if name not in cell:
                    extractor = make_extractor(features, None, config)
                    cell[name] = jf(extractor, root, out / "baselines" / tag / set_name / size / name, size)
                    save()
    return table


def study(shards: Path, sets: dict[str, Path], out: Path, name: str, seeds: list[int], sizes: list[str],
          pair_spec: PairSpec, options: list[str]) -> dict:
    """Train `name` for each seed, evaluate views 1 and 2, keep everything in OUT/results.json."""
    path = out / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {"baselines": {}, "recipes": {}}

    def save() -> None:
        write_json_atomic(path, results)

    recipe = results["recipes"].setdefault(name, {"options": options, "seeds": {}})
    recipe["options"] = options
    for seed in seeds:
        row = recipe["seeds"].setdefault(str(seed), {})
        run_dir = out / name / f"seed{seed}"
        row.update(train(shards, run_dir, seed, options))
        save()
        checkpoint = run_dir / "checkpoints" / "latest.pt"
        model, config = load_model(checkpoint)
        recipe["model"] = config.to_dict()
        base = baselines(results, config, sets, sizes, out, save)
        start, cpu = time.perf_counter(), cpu_seconds()
        for set_name, root in sets.items():
            spec = PairSpec(pair_spec.crop, config.input_size, pair_spec.gap_range, pair_spec.pairs_per_sequence)
            key = f"view1:{set_name}"
            if key not in row:
                row[key] = hidden_patch_errors(model, *held_out_pairs(root, spec)).to_dict()
            for size in sizes:
                cell = f"{set_name}@{size}"
                if cell not in row:
                    row[cell] = jf(checkpoint_features(checkpoint), root, run_dir / "eval" / set_name / size, size)
                    row[cell + ":vs_random"] = row[cell] - max(base[cell][f"random-{s}"] for s in UNTRAINED_SEEDS)
                    row[cell + ":vs_pixels"] = row[cell] - base[cell]["pixels"]
                save()
        row["eval_wall_s"], row["eval_cpu_s"] = time.perf_counter() - start, cpu_seconds() - cpu
        save()
    print_table(results, name, sets, sizes)
    return results


def print_table(results: dict, name: str, sets: dict[str, Path], sizes: list[str]) -> None:
    """Markdown: per set, view 1 per seed, then one row per evaluation size (the crossover table) with the
    trained J&F of each seed, its margins over the best random init and over pixels, and the baselines."""
    recipe = results["recipes"][name]
    rows = recipe["seeds"]
    base = results["baselines"][json.dumps(recipe["model"], sort_keys=True)]
    seeds = list(rows)
    click.echo(f"\n## {name}: {' '.join(recipe['options'])}\n")
    click.echo("training: " + ", ".join(f"seed {s} {rows[s]['train_wall_s']:.0f} s wall / {rows[s]['train_cpu_s']:.0f} "
                                        "CPU-s" for s in seeds))
    for set_name in sets:
        click.echo(f"\n{set_name}, view 1 (error on f2's hidden patches): " + ", ".join(
            f"seed {s} {rows[s][f'view1:{set_name}']['trained']:.3f}" for s in seeds if f"view1:{set_name}" in rows[s])
            + "; copy f1 " + ", ".join(sorted({f"{rows[s][f'view1:{set_name}']['copy_f1']:.3f}" for s in seeds
                                              if f"view1:{set_name}" in rows[s]})) + "; mean ~1.0\n")
        click.echo("| input | grid | " + " | ".join(f"trained seed {s} (vs best random, vs pixels)" for s in seeds)
                   + " | random init 0 / 1 / 2 | pixels |")
        click.echo("| --- | --- | " + " | ".join("---" for _ in seeds) + " | --- | --- |")
        for size in sizes:
            cell = f"{set_name}@{size}"
            if cell not in base or not all(cell in rows[s] for s in seeds):
                continue
            trained = [f"{rows[s][cell]:.3f} ({rows[s][cell + ':vs_random']:+.3f}, {rows[s][cell + ':vs_pixels']:+.3f})"
                       for s in seeds]
            randoms = " / ".join(f"{base[cell][f'random-{u}']:.3f}" for u in UNTRAINED_SEEDS)
            click.echo(f"| {size} | {_grid(size, recipe['model']['patch_size'])} | " + " | ".join(trained)
                       + f" | {randoms} | {base[cell]['pixels']:.3f} |")


def _grid(size: str, patch: int) -> str:
    if size == "native":
        return "frames' own"
    h, w = (int(v) // patch for v in size.split("x"))
    return f"{h}x{w}"


def _named_paths(values: tuple[str, ...]) -> dict[str, Path]:
    out = {}
    for value in values:
        set_name, _, path = value.partition("=")
        out[set_name] = Path(path)
    return out


@click.command(cls=OneLineCommand, context_settings={"ignore_unknown_options": True})
@click.option("--shards", type=click.Path(path_type=Path, exists=True), required=True, help="Training shards.")
@click.option("--davis", "davis", multiple=True, required=True, help="NAME=DAVIS_ROOT, repeatable.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Study folder (resumable).")
@click.option("--name", required=True, help="Recipe name (a sub-folder of OUT).")
@click.option("--seeds", default="0,1,2", show_default=True, help="Training seeds.")
@click.option("--sizes", default="64x112", show_default=True, help="Evaluation sizes HxW or 'native', comma-separated.")
@click.option("--view1-crop", type=NATURAL, default=0, show_default=True,
              help="View 1: crop side in frame pixels (0: the frame's height).")
@click.option("--view1-gap", default="2-12", show_default=True, help="View 1: frame gap range.")
@click.argument("train_options", nargs=-1, type=click.UNPROCESSED)
def main(shards: Path, davis: tuple[str, ...], out: Path, name: str, seeds: str, sizes: str, view1_crop: int,
         view1_gap: str, train_options: tuple[str, ...]) -> None:
    """Train a recipe for several seeds; views 1 and 2 per seed against untrained encoders and pixels."""
    lo, hi = (int(v) for v in view1_gap.split("-"))
    # propagation at these sizes is many small tensor operations: one thread does them several times faster
    # than two on a busy 2-core machine (training runs in its own process with its own threads)
    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    start, cpu = time.perf_counter(), cpu_seconds()
    study(shards, _named_paths(davis), out, name, [int(s) for s in seeds.split(",")], sizes.split(","),
          PairSpec(view1_crop, 0, (lo, hi)), list(train_options))
    info(f"{name}: {time.perf_counter() - start:.0f} s wall, {cpu_seconds() - cpu:.0f} CPU-s")


if __name__ == "__main__":
    main()
