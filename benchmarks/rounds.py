"""Interleaved rounds: every row is measured once per round (A B C … A B C …), so a drift in the
machine's speed touches every row alike. Per row: the median and the min–max pairs/s over the rounds;
every ratio (× naive, × frame folders, efficiency vs the ceiling) is taken within each round, against
that round's reference row, and then its median is reported."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

from benchmarks.bench_run import Measured

Runner = Callable[[], Measured]


def run_rounds(rows: dict[str, Runner], rounds: int,
               report: Callable[[str], None] | None = None) -> dict[str, list[Measured]]:
    """Call every runner once per round, in the given order; returns each row's per-round results."""
    results: dict[str, list[Measured]] = {name: [] for name in rows}
    for r in range(rounds):
        for name, run in rows.items():
            m = run()
            results[name].append(m)
            if report is not None:
                report(f"round {r + 1}/{rounds} {name}: {m.pairs_per_s:.1f} pairs/s")
    return results


# the ceiling of each DALI loader row: that very loader fed from memory (see benchmarks.bench_dali). Other
# rows have none: another decoder, reader or no decode at all is bounded by nothing measured here.
CEILINGS = {"dali_cpu": "ceiling", "ceiling": "ceiling", "dali_cpu_parallel": "ceiling_parallel",
            "ceiling_parallel": "ceiling_parallel", "dali_gpu": "ceiling_gpu", "ceiling_gpu": "ceiling_gpu"}


def ratio_references(name: str) -> dict[str, str]:
    """The ratios a row reports, each named after the row it divides by (same round)."""
    refs = {"vs_naive": "naive", "vs_folders": "jpeg_folders"}
    if name in CEILINGS:
        refs["efficiency"] = CEILINGS[name]
    return refs


def per_round_ratios(row: list[Measured], reference: list[Measured]) -> list[float]:
    """pairs/s of the row ÷ pairs/s of the reference, round by round."""
    if len(row) != len(reference):
        raise ValueError(f"rounds differ: {len(row)} vs {len(reference)}")
    return [a.pairs_per_s / b.pairs_per_s for a, b in zip(row, reference)]


def summarise(results: dict[str, list[Measured]], own_jpeg_bytes: float) -> dict[str, dict[str, Any]]:
    """Per row: median and min–max pairs/s, bytes read per pair, and the per-round ratios' medians."""
    out: dict[str, dict[str, Any]] = {}
    for name, ms in results.items():
        pps = [m.pairs_per_s for m in ms]
        row: dict[str, Any] = {"pairs_per_s": round(median(pps), 2), "pairs_per_s_min": round(min(pps), 2),
                               "pairs_per_s_max": round(max(pps), 2),
                               "pairs_per_s_rounds": [round(p, 2) for p in pps],
                               "pairs_measured": sum(m.pairs for m in ms),
                               "seconds": round(sum(m.seconds for m in ms), 2)}
        nbytes = [m.bytes_per_pair for m in ms if m.bytes_per_pair is not None]
        row["bytes_per_pair"] = round(median(nbytes)) if nbytes else None
        row["bytes_vs_own_jpeg"] = round(median(nbytes) / own_jpeg_bytes, 2) if nbytes else None
        refs = ratio_references(name)
        for key in ("efficiency", "vs_naive", "vs_folders"):
            ref = refs.get(key)
            ratios = per_round_ratios(ms, results[ref]) if ref in results else None
            row[key] = None if ratios is None else round(median(ratios), 3)
            row[f"{key}_rounds"] = None if ratios is None else [round(x, 3) for x in ratios]
        # rounds in which the row beat its own ceiling: shown, never clipped (the ceiling would be wrong)
        row["over_ceiling_rounds"] = sum(x > 1.0 for x in row["efficiency_rounds"] or [])
        note = next((m.note for m in ms if m.note), "")
        if note:
            row["note"] = note
        out[name] = row
    return out


def format_table(loaders: dict[str, dict[str, Any]]) -> str:
    """The summary as a fixed-width text table (medians; pairs/s also as min–max over the rounds)."""
    def f(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)
    lines = [(f"{'loader':<20} {'pairs/s':>9} {'min-max':>15} {'bytes/pair':>11} {'x own JPEG':>10} "
              f"{'efficiency':>10} {'x naive':>8} {'x folders':>9}")]
    for name, r in loaders.items():
        spread = f"{r['pairs_per_s_min']:.1f}-{r['pairs_per_s_max']:.1f}"
        over = "!" if r.get("over_ceiling_rounds") else " "
        lines.append(f"{name:<20} {f(r['pairs_per_s'], '9.1f')} {spread:>15} {f(r['bytes_per_pair'], '11,d')} "
                     f"{f(r['bytes_vs_own_jpeg'], '10.2f')} {f(r['efficiency'], '9.1%')}{over} "
                     f"{f(r['vs_naive'], '8.2f')} {f(r['vs_folders'], '9.2f')}")
    if any(r.get("over_ceiling_rounds") for r in loaders.values()):
        lines.append("! above its own ceiling in at least one round (efficiency_rounds in the JSON)")
    return "\n".join(lines)


def plot(loaders: dict[str, dict[str, Any]], path: Path, title: str) -> None:
    """Bar chart of the median pairs/s per row, the whiskers spanning min–max over the rounds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(loaders)
    med = [loaders[n]["pairs_per_s"] for n in names]
    spread = [[m - loaders[n]["pairs_per_s_min"] for n, m in zip(names, med)],
              [loaders[n]["pairs_per_s_max"] - m for n, m in zip(names, med)]]
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(names)), 4))
    bars = ax.bar(names, med, yerr=spread, capsize=3, color="tab:blue", ecolor="black")
    ax.bar_label(bars, fmt="%.0f", fontsize=8, padding=2)
    ax.set_ylabel("pairs / s (median, whiskers min–max)")
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="x", rotation=35, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
