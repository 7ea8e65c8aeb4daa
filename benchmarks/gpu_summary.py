"""The GPU check's summary, read from its results folder: the steps and their times, the loader sweep,
the training steps, the DAVIS timing, the gpu tests, and the targets for one H100."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from benchmarks.gpu_plan import ROWS, LoaderRows

# (label, figure key, comparison, bound): the project's targets for one H100
TARGETS = (("loader pairs/s at 224² (best sweep point)", "loader_pairs_per_s", ">=", 20_000.0),
           ("loader ÷ ViT-S/16 training demand (batch 256)", "loader_vs_training_demand", ">=", 3.0),
           ("loader overhead on the step (batch 256)", "loader_overhead", "<=", 0.02),
           ("ViT-S/16 training MFU, bf16 (best measured)", "mfu", ">=", 0.45),
           ("DAVIS val-sized propagation + scoring, s", "davis_seconds", "<=", 60.0))
ITEM = re.compile(r"^(?P<name>(loader|train)-.+)\.(?P<ext>started|json|error)$")


def read_json(path: Path) -> Any:
    """A JSON file's content, or None when it is missing or unreadable (a step killed while writing)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def unfinished(folder: Path) -> dict[str, str]:
    """Items without a readable result: {item: stalled (started, never finished) | error | unreadable}."""
    names = {m["name"] for p in folder.glob("*") if (m := ITEM.match(p.name))}
    out = {}
    for n in sorted(names):
        if (folder / f"{n}.json").exists():
            if read_json(folder / f"{n}.json") is None:
                out[n] = "unreadable"
        else:
            out[n] = "error" if (folder / f"{n}.error").exists() else "stalled"
    return out


def sweep_points(results: Path, rows: LoaderRows) -> list[dict[str, Any]]:
    """One entry per measured (source workers, threads, hw load): pairs/s, its own ceiling (measured in the
    same run) and the reader of its worker count, wherever in the sweep it was measured."""
    points, ceilings, readers = [], {}, {}
    for path in sorted((results / "loader-sweep").glob("loader-*.json")):
        r = read_json(path)
        if not r:
            continue
        dec, got = r["config"]["decoder"], r["loaders"]
        key = (dec["py_num_workers"], r["config"]["workers"], dec["hw_decoder_load"])
        if rows.ceiling in got:
            ceilings[key] = got[rows.ceiling]["pairs_per_s"]
        if rows.reader in got:
            readers[key[0]] = got[rows.reader]["pairs_per_s"]
        points.append({"py_workers": key[0], "threads": key[1], "hw_decoder_load": key[2],
                       "pairs_per_s": got.get(rows.loader, {}).get("pairs_per_s"), "skipped": r.get("skipped", {})})
    points.sort(key=lambda p: (p["py_workers"], p["threads"], p["hw_decoder_load"]))
    for p in points:
        p["ceiling_pairs_per_s"] = ceilings.get((p["py_workers"], p["threads"], p["hw_decoder_load"]))
        p["reader_pairs_per_s"] = readers.get(p["py_workers"])
        p["efficiency"] = (p["pairs_per_s"] / p["ceiling_pairs_per_s"]
                           if p["pairs_per_s"] and p["ceiling_pairs_per_s"] else None)
    return points


def best_point(points: list[dict[str, Any]]) -> dict[str, Any] | None:
    return max((p for p in points if p["pairs_per_s"]), key=lambda p: p["pairs_per_s"], default=None)


def best_loader_options(results: Path, device: str) -> tuple[str, ...]:
    """train_step_bench options for the sweep's fastest setting; () when the sweep measured nothing."""
    best = best_point(sweep_points(results, ROWS[device]))
    if best is None:
        return ()
    return ("--threads", str(best["threads"]), "--hw-decoder-load", f"{best['hw_decoder_load']:g}",
            "--py-num-workers", str(best["py_workers"]))


def train_points(results: Path) -> list[dict[str, Any]]:
    """One entry per measured (mode, batch size): from memory, and from the loader when measured."""
    out = []
    for mode in ("eager", "compile"):
        for path in sorted((results / f"train-{mode}").glob("train-*.json")):
            r = read_json(path)
            if not r:
                continue
            mem = r["tensors_on_device"]
            e = {"mode": mode, "batch_size": r["batch_size"], "model": r["model"].get("name"),
                 "input_size": r["model"].get("input_size"), "amp_bf16": r["amp_bf16"], "step_s": mem["step_s"],
                 "pairs_per_s": mem["pairs_per_s"], "warmup_s": mem.get("warmup_s"), "mfu": r.get("mfu")}
            if "with_loader" in r:
                w = r["with_loader"]
                e["loader"] = {k: w.get(k) for k in ("threads", "hw_decoder_load", "py_num_workers", "step_s",
                                                     "overhead", "data_wait_frac")}
            out.append(e)
    return sorted(out, key=lambda e: (e["mode"] != "eager", -e["batch_size"]))


def test_counts(results: Path) -> dict[str, Any] | None:
    """Passed / failed / skipped / errors of the gpu tests (their JUnit XML), and the names that failed."""
    try:
        root = ET.parse(results / "gpu-tests" / "junit.xml").getroot()
    except (OSError, ET.ParseError):
        return None
    counts = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0, "not_passed": []}
    for case in root.iter("testcase"):
        kinds = {child.tag for child in case}
        kind = ("failed" if "failure" in kinds else "errors" if "error" in kinds else
                "skipped" if "skipped" in kinds else "passed")
        counts[kind] += 1
        if kind in ("failed", "errors"):
            counts["not_passed"].append(f"{case.get('classname')}::{case.get('name')}")
    return counts


def figures(points: list[dict], train: list[dict], davis: dict | None) -> dict[str, Any]:
    best = best_point(points)
    at256 = [t for t in train if t["batch_size"] == 256]
    fed = [t for t in sorted(at256, key=lambda t: t["mode"] == "eager") if "loader" in t]
    demand = max((t["pairs_per_s"] for t in at256), default=None)
    mfu = max((t for t in train if t["mfu"] is not None), key=lambda t: t["mfu"], default=None)
    return {"loader_pairs_per_s": best and best["pairs_per_s"],
            "loader_vs_training_demand": best["pairs_per_s"] / demand if best and demand else None,
            "loader_overhead": fed[0]["loader"]["overhead"] if fed else None,
            "loader_overhead_from": f"{fed[0]['mode']}, batch 256" if fed else None,
            "mfu": mfu and mfu["mfu"], "mfu_from": mfu and f"{mfu['mode']}, batch {mfu['batch_size']}",
            "davis_seconds": davis and davis["seconds"]["propagate_and_score"]}


def summarise(results: Path) -> dict[str, Any]:
    """Everything the check found, as one JSON-able dict."""
    env = read_json(results / "env.json") or {}
    steps = read_json(results / "steps.json") or {"steps": []}
    device = "cuda" if env.get("cuda_available") else "cpu"
    points, train = sweep_points(results, ROWS[device]), train_points(results)
    davis = read_json(results / "davis" / "davis.json")
    figs = figures(points, train, davis)
    gpu = (env.get("gpus") or [None])[0]
    s = {"date": env.get("date"), "command": env.get("command"), "device": device,
         "machine": gpu["name"] if gpu else f"cpu: {env.get('cpu_cores')} cores ({env.get('cpu')})",
         "driver": gpu and gpu["driver"], "versions": env.get("versions", {}), "gpu_rates": env.get("gpu_rates"),
         "budget_s": steps.get("budget_s"), "elapsed_s": steps.get("elapsed_s"), "steps": steps["steps"],
         "rows": vars(ROWS[device]), "loader_sweep": points,
         "rows_not_in_bench": (read_json(results / "loader-sweep" / "rows.json") or {}).get("not_in_siammae_bench", []), "best_loader": best_point(points),
         "unfinished_items": {**unfinished(results / "loader-sweep"), **unfinished(results / "train-eager"),
                              **unfinished(results / "train-compile")},
         "train_steps": train, "davis": davis, "gpu_tests": test_counts(results), "figures": figs}
    if device == "cuda":
        s["targets"] = [{"target": name, "value": figs[key], "need": f"{op} {bound:g}",
                         "met": None if figs[key] is None else (figs[key] >= bound if op == ">=" else figs[key] <= bound)}
                        for name, key, op, bound in TARGETS]
    return s


def _n(v: Any, fmt: str) -> str:
    return "—" if v is None else format(v, fmt)


def _sweep_lines(s: dict[str, Any]) -> list[str]:
    r = s["rows"]
    title = f"## Loader sweep (`{r['loader']}`; ceiling `{r['ceiling']}`; reader alone `{r['reader']}`), pairs/s"
    lines = [title, "", "| source workers | threads | hw_decoder_load | pairs/s | ceiling | efficiency | reader alone |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for p in s["loader_sweep"]:
        lines.append(f"| {p['py_workers']} | {p['threads']} | {p['hw_decoder_load']:g} | {_n(p['pairs_per_s'], ',.0f')} "
                     f"| {_n(p['ceiling_pairs_per_s'], ',.0f')} | {_n(p['efficiency'], '.0%')} "
                     f"| {_n(p['reader_pairs_per_s'], ',.0f')} |")
    missing = {row for p in s["loader_sweep"] for row in p["skipped"]} | set(s["rows_not_in_bench"])
    if missing:
        lines.append(f"\nRows not measured: {', '.join(sorted(missing))} (not in this siammae-bench, or skipped: "
                     "see the step's output).")
    return lines


TRAIN_HEADER = ("## Training steps (from memory; fed by the loader: overhead = fed step / memory step - 1, "
                "input-bound = share of the fed step spent waiting for data)")
TRAIN_COLUMNS = ("| mode | batch | ms/step | pairs/s | MFU | warm-up s | loader (workers/threads/hw) | ms/step fed "
                 "| overhead | input-bound |")


def _train_lines(s: dict[str, Any]) -> list[str]:
    lines = [TRAIN_HEADER, "", TRAIN_COLUMNS, "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
    for t in s["train_steps"]:
        w = t.get("loader") or {}
        setting = f"{w.get('py_num_workers')}/{w.get('threads')}/{w.get('hw_decoder_load')}" if w else "—"
        fed_ms = w["step_s"] * 1e3 if w.get("step_s") else None
        cells = [t["mode"], str(t["batch_size"]), f"{t['step_s'] * 1e3:.1f}", f"{t['pairs_per_s']:,.0f}",
                 _n(t["mfu"], ".1%"), _n(t["warmup_s"], ".1f"), setting, _n(fed_ms, ".1f"),
                 _n(w.get("overhead"), "+.1%"), _n(w.get("data_wait_frac"), ".1%")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _head_lines(s: dict[str, Any]) -> list[str]:
    v, rates = s["versions"], s.get("gpu_rates") or {}
    driver = f", driver {s['driver']}" if s["driver"] else ""
    lines = [f"# GPU check, {s['date']}", "", f"- machine: {s['machine']}{driver}",
             (f"- torch {v.get('torch')} (CUDA {v.get('torch_cuda')}), DALI {v.get('dali')}, "
              f"timm {v.get('timm')}, Python {v.get('python')}"), f"- command: `{s['command']}`"]
    if rates:
        lines.append(f"- measured ceilings: bf16 matrix product {rates['bf16_matmul_tflops']:.0f} TFLOP/s, "
                     f"device copy {rates['copy_gb_per_s']:,.0f} GB/s")
    lines += ["", f"## Steps (budget {s['budget_s']} s, {s['elapsed_s']} s used)", "",
              "| step | status | seconds | cap | note |", "| --- | --- | ---: | ---: | --- |"]
    lines += [f"| {r['name']} | {r['status']} | {r['seconds']:.1f} | {r['cap_s']:.0f} | {r['reason'][:90]} |"
              for r in s["steps"]]
    return lines


def _davis_and_tests(s: dict[str, Any]) -> list[str]:
    lines, d, t = [], s["davis"], s["gpu_tests"]
    if d:
        sec = d["seconds"]
        lines += [(f"## DAVIS: {d['sequences']} sequences, {d['frames']} frames, {d['model']}, "
                   f"protocol {d['settings']['protocol']}"), "",
                  (f"- propagation {sec['propagate']:.1f} s ({d['frames_per_s']:.1f} frames/s), "
                   f"scoring {sec['score_alone']:.1f} s, both {sec['propagate_and_score']:.1f} s"), ""]
    if t:
        lines.append(f"## gpu tests: {t['passed']} passed, {t['failed']} failed, {t['errors']} errors, "
                     f"{t['skipped']} skipped")
        lines += [f"- not passed: {n}" for n in t["not_passed"]] + [""]
    if s["unfinished_items"]:
        items = ", ".join(f"{k} ({v})" for k, v in s["unfinished_items"].items())
        lines += [f"Unfinished items: {items}", ""]
    return lines


def summary_markdown(s: dict[str, Any]) -> str:
    """The summary for people: steps and their times, every table, the targets."""
    lines = [*_head_lines(s), "", *_sweep_lines(s), "", *_train_lines(s), "", *_davis_and_tests(s)]
    if "targets" in s:
        lines += ["## Targets (one H100)", "", "| target | need | measured | met |", "| --- | --- | ---: | --- |"]
        lines += [f"| {g['target']} | {g['need']} | {_n(g['value'], ',.3g')} | "
                  f"{'—' if g['met'] is None else ('yes' if g['met'] else 'no')} |" for g in s["targets"]]
        f = s["figures"]
        lines.append(f"\nOverhead from: {f['loader_overhead_from']}; MFU from: {f['mfu_from']}.")
    return "\n".join(lines) + "\n"
