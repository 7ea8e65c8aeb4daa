"""How long DAVIS-2017 evaluation takes: label propagation with a ViT encoder, then scoring (J&F), on
a DAVIS-layout folder, timed the way `siammae-eval davis` runs it (evaluation.davis.run_davis).

    python -m benchmarks.davis_timing --davis-root DAVIS --out RESULTS --json timing.json

run_davis propagates every sequence (frames decoded one sequence ahead, PNGs written in the
background) and then scores the written PNGs; the scoring is then run once more on its own, so the
two parts can be told apart: propagation = the whole run - scoring alone. The encoder is a
random-initialised one (its speed does not depend on its weights); so is the J&F it reports.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from siammae_common.cli_types import pixel_size
from siammae_common.console import UserError, info

PROCESS_START = time.perf_counter()


def time_davis(davis_root: Path, out: Path, model: str, device: str, protocol: str,
               fixed_size: tuple[int, int] | None) -> dict:
    """Propagate and score every sequence of davis_root/ImageSets/2017/val.txt; seconds and metrics."""
    import torch

    from evaluation import davis
    from evaluation.davis_io import open_davis
    from evaluation.davis_score import score_results
    from evaluation.features import random_init_features
    from evaluation.segmentation import annotation_resize_rule
    from evaluation.settings import protocol_settings

    overrides = {"fixed_size": fixed_size} if fixed_size else {}
    settings = protocol_settings(protocol, "davis", device=device, **overrides)
    seqs = open_davis(davis_root, "val", "480p")
    frames = sum(len(s.frames) for s in seqs)
    extractor = random_init_features(model, seed=0, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
    run_start = time.perf_counter()
    metrics = davis.run_davis(extractor, davis_root, out, settings)
    total = time.perf_counter() - run_start
    start = time.perf_counter()
    score_results(davis_root, out, "val", "480p", [s.name for s in seqs], score_on="native",
                  annotation_resize=annotation_resize_rule(settings))
    score = time.perf_counter() - start
    return {"sequences": len(seqs), "frames": frames, "model": model, "device": device,
            "device_name": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "settings": settings.to_dict(), "seconds": {
                "propagate_and_score": total, "score_alone": score, "propagate": total - score,
                "process_start_to_run": run_start - PROCESS_START},
            "frames_per_s": frames / max(total - score, 1e-9), "J&F-Mean": metrics.get("J&F-Mean")}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--davis-root", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Where the result PNGs go (an empty or new folder).")
@click.option("--model", default="vit_small_patch16", show_default=True)
@click.option("--device", type=click.Choice(["cuda", "cpu"]), default="cuda", show_default=True)
@click.option("--protocol", default="cropmae", show_default=True, help="Named propagation protocol.")
@click.option("--size", "fixed_size", default=None, help="Input size HxW instead of the protocol's (toy runs).")
@click.option("--json", "json_path", type=click.Path(path_type=Path, dir_okay=False), required=True)
def main(davis_root: Path, out: Path, model: str, device: str, protocol: str, fixed_size: str | None,
         json_path: Path) -> None:
    """Seconds for DAVIS propagation and for its scoring, with a random-initialised encoder."""
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out}: already holds files; choose an empty folder")
    try:
        size = None if fixed_size is None else pixel_size(fixed_size, "--size")
        result = time_davis(davis_root, out, model, device, protocol, size)
    except (ValueError, TypeError) as exc:
        raise UserError(str(exc)) from None
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    s = result["seconds"]
    info(f"davis: {result['sequences']} sequences, {result['frames']} frames: propagation {s['propagate']:.1f} s, "
         f"scoring {s['score_alone']:.1f} s, both {s['propagate_and_score']:.1f} s ({model}, {device})")


if __name__ == "__main__":
    main()
