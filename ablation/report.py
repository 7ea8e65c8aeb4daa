"""results.json → report.md: the seed report's tables with our numbers beside theirs."""

from __future__ import annotations

from ablation import reference
from ablation.grid import AblationRun

Scores = dict[str, float]          # davis-score keys, fractions in [0, 1]


def _pct(scores: Scores | None, key: str) -> str:
    return "—" if scores is None else f"{100 * scores[key]:.1f}"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _best_random(results: dict) -> float | None:
    scores = [v["J&F-Mean"] for k, v in results.get("baselines", {}).items() if k.startswith("random_init")]
    return max(scores) if scores else None


def _ours_and_theirs(scores: Scores | None, theirs: reference.ReportedScore | None, link: str,
                     best_random: float | None) -> list[str]:
    reported = ["—"] * 3 if theirs is None else [f"{theirs.jf:.1f}", f"{theirs.j:.1f}", f"{theirs.f:.1f}"]
    margin = "—" if scores is None or best_random is None else f"{100 * (scores['J&F-Mean'] - best_random):+.1f}"
    hidden = (scores or {}).get("hidden_patch")
    view1 = "—" if hidden is None else f"{hidden['trained']:.3f} / {hidden['copy_f1']:.3f}"
    return [_pct(scores, "J&F-Mean"), margin, _pct(scores, "J-Mean"), _pct(scores, "F-Mean"), view1, *reported, link]


_HEAD = ["J&F_m", "vs best random init", "J_m", "F_m", "hidden patches: trained / copy f1", "report J&F_m",
         "report J_m", "report F_m", "run"]


def _find(runs: list[AblationRun], **match: object) -> AblationRun | None:
    for run in runs:
        if all(getattr(run, k) == v for k, v in match.items()):
            return run
    return None


def _scores(results: dict, run: AblationRun | None, epoch: int | None = None) -> Scores | None:
    if run is None:
        return None
    entry = results["runs"].get(run.name, {}).get("scores", {})
    return entry.get(str(epoch if epoch is not None else run.epochs))


def _link(run: AblationRun | None) -> str:
    return "—" if run is None else f"[{run.name}]({run.name}/config.json)"


def encoder_decoder_table(results: dict, runs: list[AblationRun], epochs: int, mask_ratio: float) -> str:
    """Table 2a: encoder × decoder at the schedule's mask ratio (the report's: 0.95)."""
    lines = [_row(["Encoder", "Decoder", *_HEAD]), _row(["---"] * (len(_HEAD) + 2))]
    for (encoder, decoder), theirs in reference.ENCODER_DECODER.items():
        run = _find(runs, encoder=encoder, decoder=decoder, mask_ratio=mask_ratio, epochs=epochs)
        lines.append(_row([encoder.capitalize(), decoder.capitalize(),
                           *_ours_and_theirs(_scores(results, run), theirs, _link(run), _best_random(results))]))
    return "\n".join(lines)


def mask_ratio_table(results: dict, runs: list[AblationRun], epochs: int) -> str:
    """Table 2b: mask ratio for the siamese encoder with the cross-self decoder."""
    lines = [_row(["Mask ratio", *_HEAD]), _row(["---"] * (len(_HEAD) + 1))]
    for ratio, theirs in reference.MASK_RATIO.items():
        run = _find(runs, encoder="siamese", decoder="cross-self", mask_ratio=ratio, epochs=epochs)
        lines.append(_row([f"{ratio:.2f}", *_ours_and_theirs(_scores(results, run), theirs, _link(run),
                                                             _best_random(results))]))
    return "\n".join(lines)


def epochs_table(results: dict, runs: list[AblationRun]) -> str:
    """Table 1: J&F at the epoch snapshots of one long run (the report's row where it has that epoch)."""
    lines = [_row(["Epochs", *_HEAD]), _row(["---"] * (len(_HEAD) + 1))]
    run = next((r for r in runs if len(r.evaluate_at) > 1), None)
    epochs = sorted(set(run.evaluate_at if run else ()) | set(reference.EPOCHS))
    for epoch in epochs:
        scores = _scores(results, run, epoch) if run and epoch in run.evaluate_at else None
        theirs = reference.EPOCHS.get(epoch)
        cells = _ours_and_theirs(scores, theirs, _link(run) if scores else "—", _best_random(results))
        lines.append(_row([str(epoch), *cells]))
    return "\n".join(lines)


def baselines_table(results: dict) -> str:
    """The untrained references every trained row should beat, evaluated with the same settings."""
    lines = [_row(["Features", "J&F_m", "J_m", "F_m", "metrics"]), _row(["---"] * 5)]
    for name, scores in results.get("baselines", {}).items():
        lines.append(_row([name.replace("_", " "), _pct(scores, "J&F-Mean"), _pct(scores, "J-Mean"),
                           _pct(scores, "F-Mean"), f"[metrics.json]({scores['metrics']})"]))
    return "\n".join(lines)


def render_report(results: dict, runs: list[AblationRun]) -> str:
    """The whole report.md: settings, the three tables, and the figures of every run."""
    schedule = results["schedule"]
    parts = [
        "# SiamMAE ablations",
        (f"Shards: `{results['shards']}` · DAVIS: `{results['davis_root']}` · model `{schedule['model']}`, "
        f"input {schedule['input_size']}², batch {schedule['batch_size']}, base lr {schedule['blr']}, "
        f"{schedule['pairs_per_clip']} pairs per clip per epoch, {schedule['epochs']} epochs per encoder/decoder "
        f"and mask-ratio run, frame gaps {schedule['gap_range'][0]}-{schedule['gap_range'][1]}, crop scale "
        f"{schedule['crop_scale'][0]}-{schedule['crop_scale'][1]}. "
        "Our numbers are J&F-Mean / J-Mean / F-Mean in percent from `siammae-eval` "
        "(official davis2017-evaluation definitions) on the DAVIS root above; the report's columns are "
        f"the seed report's ViT-T/16 on UCF101 and real DAVIS-2017 val ({reference.SEED_REPORT}), for "
        "reference only: on other data the absolute values are not comparable, the ordering is."),
        "Label propagation: " + ", ".join(f"{k} `{v}`" for k, v in results["propagation"].items()) + ".",
        ("*vs best random init*: J&F points over the best of the untrained encoders of the same architecture "
         "below. *Hidden patches*: the error on f2's hidden patches of held-out pairs from the DAVIS set "
         "(normalised pixels), of the trained model and of copying f1's patch at the same place; predicting "
         "each patch's mean scores about 1.0. A model that learned correspondence beats copying f1."),
        "## Baselines (untrained, same propagation settings)",
        baselines_table(results),
    ]
    tables = results["tables"]
    if "encdec" in tables:
        ratio = schedule["mask_ratio"]
        parts += [f"## Table 2a — encoder × decoder (mask {ratio}; the report's: 0.95)",
                  encoder_decoder_table(results, runs, schedule["epochs"], ratio)]
    if "mask" in tables:
        parts += ["## Table 2b — asymmetric mask ratio", mask_ratio_table(results, runs, schedule["epochs"])]
    if "epochs" in tables:
        parts += ["## Table 1 — pretraining epochs (snapshots of one run)", epochs_table(results, runs)]
    parts.append("## Runs")
    for run in runs:
        entry = results["runs"].get(run.name, {})
        figures = [f"![{kind} of {run.name}]({path})" for kind, path in entry.get("figures", {}).items()]
        parts += [f"### {run.name}", f"Config: [{run.name}/config.json]({run.name}/config.json) · seed {run.seed}",
                  *figures]
    return "\n\n".join(parts) + "\n"
