"""The demo's report: the three views as tables, the figures (loss curve, reconstructions of held-out pairs,
propagated masks) and one closing line that says what the trained encoder beat and what it did not."""

from __future__ import annotations

from pathlib import Path

import torch

from ablation.figures import loss_curve
from evaluation.compare import write_overlay
from evaluation.davis_io import open_davis
from evaluation.hidden_patch import PairSpec, held_out_pairs
from model.checkpoint import load_model
from model.masking import random_masking
from model.recon_images import reconstruction_grid
from siammae_common.atomic import atomic_write, write_text_atomic

VIEW_TITLES = {"view2": "toy scale", "view3-native": "frames' own size", "view3-protocol": "full cropmae (480x880)"}
WHY_UNTRAINED_IS_STRONG = (
    "Margins are small at these sizes because an untrained ViT is a strong baseline there: its features "
    "are the raw pixels behind a random projection, plus the sin-cos position prior and LayerNorm, which on "
    "these frames already propagate labels well, while the toy learned its features on a patch grid of {grid}; the paper-scale protocol "
    "needs a real run (a GPU, real video, a ViT-S trained for hundreds of epochs).")


def _order(item: tuple[str, dict]) -> tuple[int, str]:
    """Rows as the report reads them: trained, then the random inits by seed, then pixels."""
    name = item[0].split("/", 1)[1]
    return ({"trained": 0, "pixels": 2}.get(name, 1), name)


def _label(features: str) -> str:
    return features.replace("random-init-", "random init, seed ")


def view1_table(v1: dict) -> str:
    """Error on f2's hidden patches, normalised pixels: the trained model and the two untrained predictors."""
    rows = [("trained model", v1["trained"]), ("copy f1's patch at the same place", v1["copy_f1"]),
            ("predict each patch's mean", v1["mean"])]
    lines = ["| predictor | error on f2's hidden patches |", "| --- | ---: |"]
    return "\n".join(lines + [f"| {name} | {value:.3f} |" for name, value in rows])


def propagation_table(results: dict, view: str) -> str:
    """J&F, J, F of every extractor of one view, and the trained encoder's margin over each."""
    rows = {k.split("/", 1)[1]: m for k, m in sorted(results.items(), key=_order) if k.split("/", 1)[0] == view}
    trained = rows["trained"]["J&F-Mean"]
    lines = ["| features | J&F | J | F | trained − this |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, m in rows.items():
        margin = "" if name == "trained" else f"{trained - m['J&F-Mean']:+.3f}"
        lines.append(f"| {_label(name)} | {m['J&F-Mean']:.3f} | {m['J-Mean']:.3f} | {m['F-Mean']:.3f} | {margin} |")
    return "\n".join(lines)


def _input_line(results: dict, view: str) -> str:
    settings = results[f"{view}/trained"]["settings"]
    size = settings["fixed_size"]
    return "the frames' own size" if size is None else f"a {size[0]}x{size[1]} input"


def closing_line(views: dict) -> str:
    """What the trained encoder beat and what it did not, in one sentence per view."""
    v1, results = views["view1"], views["propagation"]
    beat, lost = [], []
    (beat if v1["trained"] < v1["copy_f1"] else lost).append(
        f"copying f1 on hidden patches ({v1['trained']:.3f} vs {v1['copy_f1']:.3f})")
    for view, title in VIEW_TITLES.items():
        if f"{view}/trained" not in results:
            continue
        trained = results[f"{view}/trained"]["J&F-Mean"]
        for key, m in results.items():
            name = key.split("/", 1)[1]
            if key.startswith(view + "/") and name != "trained":
                margin = trained - m["J&F-Mean"]
                (beat if margin > 0 else lost).append(f"{_label(name)} at {title} ({margin:+.3f} J&F)")
    won = f"**The trained encoder beat** {'; '.join(beat)}." if beat else "**The trained encoder beat nothing.**"
    return won + (f" **It did not beat** {'; '.join(lost)}." if lost else " It lost to nothing it was compared with.")


def reconstruction_png(checkpoint: Path, davis_root: Path, gap_range: tuple[int, int], path: Path) -> None:
    """f1 | masked f2 | prediction | f2 on four held-out pairs (one per sequence)."""
    model, config = load_model(checkpoint)
    f1, f2 = held_out_pairs(davis_root, PairSpec(crop=0, size=config.input_size, gap_range=gap_range,
                                                  pairs_per_sequence=1, seed=1))
    f1, f2 = f1[:4], f2[:4]
    n = (config.input_size // config.patch_size) ** 2
    masking = random_masking(f1.shape[0], n, config.mask_ratio, "cpu", torch.Generator().manual_seed(0))
    with torch.no_grad():
        image = reconstruction_grid(model, f1, f2, model.eval()(f1, f2, masking=masking))
    from PIL import Image

    with atomic_write(path) as f:
        Image.fromarray(image).save(f, format="PNG")


def median_sequence(per_object: dict[str, dict[str, float]]) -> str:
    """The sequence whose mean (J + F) / 2 over its objects is the median of the set (the lower middle
    for an even count): a representative example for a figure, neither the best nor the worst."""
    scores: dict[str, list[float]] = {}
    for obj, m in per_object.items():
        scores.setdefault(obj.rsplit("_", 1)[0], []).append((m["J"] + m["F"]) / 2)
    ranked = sorted(scores, key=lambda seq: (sum(scores[seq]) / len(scores[seq]), seq))
    return ranked[(len(ranked) - 1) // 2]


def write_figures(views: dict, checkpoint: Path, davis_root: Path, out: Path) -> dict[str, str]:
    """Loss curve, reconstruction grid, and one propagation overlay per view; names relative to OUT."""
    run_dir = checkpoint.parent.parent
    figures = {"loss": loss_curve(run_dir / "metrics.jsonl", out / "loss.png", "SiamMAE training loss")}
    figures["reconstruction"] = out / "reconstruction.png"
    reconstruction_png(checkpoint, davis_root, tuple(views["view1"]["gap_range"]), figures["reconstruction"])
    for view in VIEW_TITLES:
        names = [k.split("/", 1)[1] for k, _ in sorted(views["propagation"].items(), key=_order)
                 if k.startswith(view + "/")]
        if names:
            sequence = median_sequence(views["propagation"][f"{view}/trained"]["per_object"])
            seq = open_davis(davis_root, sequences=[sequence])[0]
            figures[view] = out / f"overlay-{view}.png"
            write_overlay(seq, {_label(n): out / view / n for n in names}, figures[view])
    return {k: str(Path(v).relative_to(out)) for k, v in figures.items()}


def write_report(views: dict, checkpoint: Path, davis_root: Path, out: Path) -> Path:
    """OUT/report.md with the three views, the figures and the closing line; returns its path."""
    figures = write_figures(views, checkpoint, davis_root, out)
    results, model = views["propagation"], views["model"]
    grid = f"{model['input_size'] // model['patch_size']}x{model['input_size'] // model['patch_size']}"
    v1 = views["view1"]
    parts = [
        "# What SiamMAE learned in the demo",
        (f"Checkpoint `{views['checkpoint']}` ({model['name']}, trained on {model['input_size']}-pixel crops: "
         f"patch grid {grid}); held-out set `{views['davis_root']}` ({views['sequences']} sequences)."),
        f"![training loss]({figures['loss']})",
        "## 1. What SiamMAE itself learns: predicting f2's hidden patches",
        (f"{v1['pairs']} held-out pairs (frame gaps {v1['gap_range'][0]}-{v1['gap_range'][1]}, "
        f"{v1['patches']} hidden patches); mean squared error in normalised pixels. A model that learned "
        "where f2's content was in f1 beats copying f1."),
        view1_table(v1),
        f"![f1 | masked f2 | prediction | f2]({figures['reconstruction']})",
        "## 2. Label propagation at the toy's own scale",
        (f"The cropmae protocol at {_input_line(results, 'view2')}, all {views['sequences']} sequences. "
        "Random init: the same architecture and settings, untrained."),
        propagation_table(results, "view2"),
        f"![propagated masks]({figures['view2']})",
        (f"The overlay shows {median_sequence(results['view2/trained']['per_object'])}, the sequence in the "
         "middle of the trained encoder's per-sequence J&F (neither its best nor its worst)."),
    ]
    if "view3-native/trained" in results:
        names = ", ".join(views["view3_sequences"])
        parts += ["## 3. Label propagation at the frames' own size and at the full cropmae protocol",
                  (f"On {len(views['view3_sequences'])} sequences ({names}): these sizes cost minutes per "
                  "sequence on a CPU, so the figures are an example, not a measurement of the set."),
                  "At the frames' own size:", propagation_table(results, "view3-native"),
                  "At the full cropmae protocol (480x880):", propagation_table(results, "view3-protocol"),
                  f"![propagated masks, full protocol]({figures['view3-protocol']})",
                  WHY_UNTRAINED_IS_STRONG.format(grid=grid)]
    parts.append(closing_line(views))
    path = out / "report.md"
    write_text_atomic(path, "\n\n".join(parts) + "\n")
    return path
