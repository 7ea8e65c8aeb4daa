"""The GPU check's summary: the loader sweep, the training step figures, and the targets they meet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# One H100 (the project's loader targets): pairs/s at 224² from page cache, the loader's margin over
# what ViT-S/16 training consumes, the step time the loader may add, and bf16 model FLOP utilisation.
TARGETS = (("loader pairs/s at 224²", "loader_pairs_per_s", ">=", 20_000.0),
           ("loader ÷ ViT-S/16 training demand", "loader_vs_training_demand", ">=", 3.0),
           ("loader overhead on the step time", "loader_overhead", "<=", 0.02),
           ("ViT-S/16 training MFU (bf16)", "mfu", ">=", 0.45))


def sweep_rows(rows: tuple[str, str], sweep: list[Path]) -> list[dict[str, Any]]:
    """One entry per swept (threads, hw_decoder_load): the loader row's median, min–max and efficiency."""
    loader, ceiling = rows
    out = []
    for path in sweep:
        report = json.loads(path.read_text())
        got, ceil = report["loaders"].get(loader), report["loaders"].get(ceiling)
        entry: dict[str, Any] = {"file": path.name, "threads": report["config"]["workers"],
                                 "hw_decoder_load": report["config"]["decoder"]["hw_decoder_load"],
                                 "batch_size": report["config"]["batch_size"],
                                 "crop_size": report["config"]["sampling"]["crop_size"],
                                 "rounds": report["config"]["rounds"], "skipped": report.get("skipped", {})}
        if got is not None:
            entry |= {"pairs_per_s": got["pairs_per_s"], "min": got["pairs_per_s_min"],
                      "max": got["pairs_per_s_max"], "efficiency": got["efficiency"]}
        if ceil is not None:
            entry["ceiling_pairs_per_s"] = ceil["pairs_per_s"]
        out.append(entry)
    return out


def step_figures(step: Path | None) -> dict[str, Any] | None:
    """Training step time and pairs/s on an in-memory batch, MFU, and the same fed by the loader."""
    if step is None:
        return None
    r = json.loads(step.read_text())
    model = r["model"]
    out: dict[str, Any] = {"model": model.get("name"), "input_size": model.get("input_size"),
                           "decoder": f"{model.get('decoder_embed_dim')} wide x {model.get('decoder_depth')} deep",
                           "batch_size": r["batch_size"], "amp_bf16": r["amp_bf16"], "compile": r["compile"],
                           "device": r["device"], "step_s": r["tensors_on_device"]["step_s"],
                           "pairs_per_s": r["tensors_on_device"]["pairs_per_s"], "mfu": r.get("mfu")}
    if "with_loader" in r:
        w = r["with_loader"]
        keys = ("loader", "threads", "hw_decoder_load", "step_s", "pairs_per_s", "data_wait_frac")
        out["with_loader"] = {k: w[k] for k in keys if k in w}
        out["loader_overhead"] = w["overhead"]
    return out


def summarise_check(env: dict[str, Any], rows: tuple[str, str], sweep: list[Path], step: Path | None,
                    failed: list[str], data_source: str) -> dict[str, Any]:
    """Everything the check found, as one JSON-able dict."""
    measured = [e for e in sweep_rows(rows, sweep) if "pairs_per_s" in e]
    best = max(measured, key=lambda e: e["pairs_per_s"], default=None)
    steps = step_figures(step)
    figures: dict[str, Any] = {
        "loader_pairs_per_s": best and best["pairs_per_s"],
        "loader_vs_training_demand": (best["pairs_per_s"] / steps["pairs_per_s"]) if best and steps else None,
        "loader_overhead": steps and steps.get("loader_overhead"),
        "mfu": steps and steps.get("mfu")}
    gpu = env["gpus"][0] if env["gpus"] else None
    summary = {"date": env["date"], "command": env["command"], "data": data_source,
               "device": gpu["name"] if gpu else f"cpu: {env['cpu_cores']} cores ({env['cpu']})",
               "driver": gpu["driver"] if gpu else None, "versions": env["versions"],
               "loader_row": rows[0], "loader_sweep": sweep_rows(rows, sweep), "best_loader": best,
               "train_step": steps, "figures": figures, "failed_steps": failed}
    if gpu:
        summary["targets"] = [{"target": name, "value": figures[key], "need": f"{op} {bound:g}",
                               "met": None if figures[key] is None else
                               (figures[key] >= bound if op == ">=" else figures[key] <= bound)}
                              for name, key, op, bound in TARGETS]
    return summary


def _num(v: Any, fmt: str) -> str:
    return "—" if v is None else format(v, fmt)


def summary_markdown(s: dict[str, Any]) -> str:
    """The summary for people: the sweep table, the step figures, the targets."""
    v = s["versions"]
    lines = [f"# GPU check, {s['date']}", "",
             f"- device: {s['device']}" + (f", driver {s['driver']}" if s["driver"] else ""),
             (f"- torch {v['torch']} (CUDA {v['torch_cuda']}), DALI {v.get('dali')} (CUDA build "
             f"{v.get('dali_cuda')}), Python {v['python']}"),
             f"- command: `{s['command']}`", f"- data: {s['data']}", "",
             f"## Loader sweep (`{s['loader_row']}`, pairs/s: median of the rounds, min–max)", "",
             "| threads | hw_decoder_load | pairs/s | min–max | ceiling | efficiency |",
             "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for e in s["loader_sweep"]:
        spread = f"{e['min']:.0f}–{e['max']:.0f}" if "min" in e else "not measured"
        lines.append(f"| {e['threads']} | {e['hw_decoder_load']:g} | {_num(e.get('pairs_per_s'), ',.0f')} | "
                     f"{spread} | {_num(e.get('ceiling_pairs_per_s'), ',.0f')} | {_num(e.get('efficiency'), '.1%')} |")
    t = s["train_step"]
    lines += ["", "## Training steps", ""]
    if t is None:
        lines.append("not measured (see log.txt)")
    else:
        lines += [(f"- {t['model']} at {t['input_size']}², decoder {t['decoder']}, batch {t['batch_size']}, "
                  f"bf16 {t['amp_bf16']}, compile {t['compile']}"),
                  (f"- in-memory batch: {t['step_s'] * 1e3:.1f} ms/step, {t['pairs_per_s']:,.0f} pairs/s, "
                  f"MFU {_num(t['mfu'], '.1%')}")]
        if "with_loader" in t:
            w = t["with_loader"]
            lines.append(f"- fed by siammae-train's {w['loader']} loader ({w['threads']} threads, hw_decoder_load "
                         f"{w.get('hw_decoder_load')}): {w['step_s'] * 1e3:.1f} ms/step, loader overhead "
                         f"{t['loader_overhead']:+.1%}, waiting for data {_num(w.get('data_wait_frac'), '.1%')} "
                         f"of the step")
    f = s["figures"]
    lines += ["", f"- best loader ÷ training demand: {_num(f['loader_vs_training_demand'], '.2f')}×"]
    if "targets" in s:
        lines += ["", "## Targets (one H100)", "", "| target | need | measured | met |", "| --- | --- | ---: | --- |"]
        for g in s["targets"]:
            lines.append(f"| {g['target']} | {g['need']} | {_num(g['value'], ',.3g')} | "
                         f"{'—' if g['met'] is None else ('yes' if g['met'] else 'no')} |")
    if s["failed_steps"]:
        lines += ["", f"Failed steps (see log.txt): {', '.join(s['failed_steps'])}"]
    return "\n".join(lines) + "\n"
