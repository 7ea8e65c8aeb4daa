"""Progress of a long command, readable where it is watched: a tqdm bar on a terminal; in a log file (a
batch job's `cmd > log 2>&1`) plain, timestamped, flushed lines at a steady rate instead of nothing.

A plain line is written when `every` items have passed or `seconds` have elapsed since the previous line,
whichever comes first (and at the end, if anything happened since): `seconds=0` writes one per update.

    2026-11-27 14:03:12 train: step 40/1000 (4.0%) | loss 0.8123 | 0.52 step/s | elapsed 1m17s | ETA 30m46s
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TextIO, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def duration(seconds: float) -> str:
    """A short human duration: 42s, 3m05s, 2h07m, 3d04h."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def rate_text(per_second: float, unit: str) -> str:
    """`412 frame/s`, `2.35 clip/s`, or for slow work the time per item: `25.3 s/seq`."""
    if per_second >= 100:
        return f"{per_second:,.0f} {unit}/s"
    if per_second >= 0.5:
        return f"{per_second:.2f} {unit}/s"
    return f"{1 / per_second:.1f} s/{unit}" if per_second > 0 else f"- {unit}/s"


class PlainLines:
    """The log-file half of Progress: counts items and writes a plain line at a steady rate."""

    def __init__(self, total: int | None, desc: str, unit: str, initial: int, every: int | None,
                 seconds: float, stream: TextIO, rate: bool) -> None:
        self.total, self.desc, self.unit, self.stream, self.rate = total, desc, unit, stream, rate
        self.n = self.start_n = self.line_n = initial
        self.every = every if every is not None else max(1, (total or 0) // 100)
        self.seconds = seconds
        self.start = self.line_t = time.monotonic()
        self.postfix = ""

    def update(self, n: int) -> None:
        self.n += n
        now = time.monotonic()
        if self.n - self.line_n >= self.every or now - self.line_t >= self.seconds:
            self.write(now)

    def write(self, now: float | None = None) -> None:
        """Write the line for the current count now."""
        now = time.monotonic() if now is None else now
        self.line_n, self.line_t = self.n, now
        self.stream.write(self.line(now) + "\n")
        self.stream.flush()

    def line(self, now: float) -> str:
        """`<time> <desc>: <unit> n/total (pct) | <postfix> | rate | elapsed | ETA`."""
        elapsed = now - self.start
        done = self.n - self.start_n
        speed = done / elapsed if elapsed > 0 else 0.0
        count = f"{self.unit} {self.n:,}" + (f"/{self.total:,} ({100 * self.n / self.total:.1f}%)"
                                              if self.total else "")
        prefix = f"{self.desc}: " if self.desc else ""
        parts = [f"{time.strftime('%Y-%m-%d %H:%M:%S')} {prefix}{count}"]
        if self.postfix:
            parts.append(self.postfix)
        if self.rate and done > 0:
            parts.append(rate_text(speed, self.unit))
        parts.append(f"elapsed {duration(elapsed)}")
        if self.total and 0 < done and self.n < self.total:
            parts.append(f"ETA {duration((self.total - self.n) / speed)}")
        return " | ".join(parts)

    def close(self) -> None:
        if self.n != self.line_n:
            self.write()


class Progress(Generic[T]):
    """A progress display with tqdm's small interface (iterate, update, set_postfix, close, n), shown as
    a bar on a terminal and as plain lines elsewhere; `disable=True` shows nothing, `lines=False` only
    the bar (for an inner loop whose outer one already writes lines)."""

    def __init__(self, items: Iterable[T] | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", initial: int = 0, disable: bool | None = None, every: int | None = None,
                 seconds: float = 30.0, rate: bool = True, lines: bool = True, stream: TextIO | None = None,
                 terminal: bool | None = None) -> None:
        self.items = items
        stream = stream if stream is not None else sys.stderr
        if total is None and items is not None and hasattr(items, "__len__"):
            total = len(items)  # type: ignore[arg-type]
        terminal = _is_terminal(stream) if terminal is None else terminal
        self.bar: tqdm | None = None
        self.lines: PlainLines | None = None
        if disable is False or (disable is None and terminal):
            self.bar = tqdm(total=total, desc=desc, unit=unit, initial=initial, dynamic_ncols=True, file=stream)
        elif disable is None and lines:
            self.lines = PlainLines(total, desc, unit, initial, every, seconds, stream, rate)

    @property
    def n(self) -> int:
        """Items counted so far (the initial value included)."""
        if self.bar is not None:
            return int(self.bar.n)
        return self.lines.n if self.lines is not None else 0

    def __iter__(self) -> Iterator[T]:
        if self.items is None:
            raise TypeError("Progress made without items is not iterable")
        try:
            for item in self.items:
                yield item
                self.update(1)
        finally:
            self.close()

    def update(self, n: int = 1) -> None:
        """Count n more items (a plain line follows if one is due)."""
        if self.bar is not None:
            self.bar.update(n)
        elif self.lines is not None:
            self.lines.update(n)

    def set_postfix(self, refresh: bool = True, **fields: Any) -> None:
        """Figures shown after the count: `loss=0.81` on the bar, `loss 0.81` in the next line."""
        self.set_postfix_str(" | ".join(f"{k.replace('_', ' ')} {v}" for k, v in fields.items()), refresh)

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        """Free text shown after the count (on the bar, and in the next plain line)."""
        if self.bar is not None:
            self.bar.set_postfix_str(text.replace(" | ", ", "), refresh=refresh)
        elif self.lines is not None:
            self.lines.postfix = text

    def close(self) -> None:
        """End the bar, or write the last count if no line showed it yet."""
        if self.bar is not None:
            self.bar.close()
        elif self.lines is not None:
            self.lines.close()
            self.lines = None

    def __enter__(self) -> Progress[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):         # closed or not a real stream
        return False
