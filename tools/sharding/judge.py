"""Is a decoded clip complete? Judged by its outcome (the frames' times against the stream), not by log lines.

Real files print decoder errors while decoding every frame (H.264 streams with a stray slice, DivX/Xvid
with packed B-frames), and containers declare frames that never decode by design (AVI's empty
"dropped frame" chunks, the pre-roll of an edit list). So a clip is good when its frames cover the stream:

- truncated: the data stops before the container's declared duration, the file ends inside a packet, or
  decoding stops before the packets do; "before" means by more than TOLERANCE_FRAMES frame intervals;
- damaged: pictures the packets hold at times between the first and the last decoded frame have no
  decoded frame (one within MATCH_FRACTION of a frame interval), more than max(MAX_LOST_FRAMES,
  MAX_LOST_SHARE x pictures) of them; or decoding starts more than LEADING_ALLOWANCE pictures late.

The thresholds come from real cases: a frame or two covers the rounding of container durations; a
trimmed open-GOP file legitimately loses its leading pictures (at most the B-frame depth, up to 16);
a single lost picture (garbage over one frame) leaves a clip worth keeping, eight of fifty do not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tools.sharding.probe import StreamFacts

TOLERANCE_FRAMES = 2          # "within a frame or two" of the declared end
MATCH_FRACTION = 0.6          # a decoded frame this close (in frame intervals) shows a packet's picture
MAX_LOST_FRAMES = 2           # pictures lost in the middle that still leave a clip "good" ...
MAX_LOST_SHARE = 0.01         # ... or this share of them, whichever is larger
LEADING_ALLOWANCE = 16        # leading pictures a decoder may drop (open GOP at the start of a file)
VFR_DEVIATION = 0.1           # a frame interval this far (relative) from the median makes a clip VFR


@dataclass(frozen=True)
class Verdict:
    """`problem` is None for a good clip, else 'truncated: ...' or 'damaged: ...'; notes are worth recording."""

    problem: str | None
    notes: tuple[str, ...] = ()


def judge(facts: StreamFacts, times: np.ndarray, *, resampled_interval: float | None = None,
          stopped_at_limit: bool = False) -> Verdict:
    """Judge decoded frame times [N] (seconds, increasing) against the stream's facts.

    `resampled_interval`: 1/fps when frames were resampled (then only coverage is checked);
    `stopped_at_limit`: decoding stopped at --max-frames on purpose (then only the decoded span is checked).
    """
    interval = max(facts.frame_interval, resampled_interval or 0.0) or _median_gap(times)
    tolerance = TOLERANCE_FRAMES * interval + 1e-3
    last = float(times[-1])
    if facts.cut_short:
        return Verdict(f"truncated: {facts.cut_short}")
    if not stopped_at_limit:
        if facts.declared_end is not None and facts.packets_end < facts.declared_end - tolerance:
            return Verdict(f"truncated: the stream's data ends at {facts.packets_end:.2f} s, "
                           f"the container declares {facts.declared_end:.2f} s")
        expected_last = float(facts.picture_times[-1]) if len(facts.picture_times) else last
        if last < expected_last - tolerance:
            return Verdict(f"truncated: decoding stops at {last:.2f} s, the packets go on to {expected_last:.2f} s")
    if resampled_interval is not None:
        return Verdict(None)
    return _judge_missing_pictures(facts, times, interval)


def _judge_missing_pictures(facts: StreamFacts, times: np.ndarray, interval: float) -> Verdict:
    expected = facts.picture_times
    if not len(expected) or not interval:
        return Verdict(None)
    first, last = float(times[0]), float(times[-1])
    shown = _nearest_distance(times, expected) <= MATCH_FRACTION * interval
    leading = int(np.sum(~shown & (expected < first)))
    middle = ~shown & (expected > first) & (expected < last)
    lost = int(np.sum(middle))
    notes = []
    if leading > LEADING_ALLOWANCE:
        return Verdict(f"damaged: decoding starts at {first:.2f} s, {leading} pictures after the first")
    if leading:
        notes.append(f"{leading} leading picture(s) not decoded (open GOP or pre-roll)")
    if lost > max(MAX_LOST_FRAMES, MAX_LOST_SHARE * len(expected)):
        return Verdict(f"damaged: {lost} of {len(expected)} pictures missing in the middle "
                       f"(first at {float(expected[middle][0]):.2f} s)")
    if lost:
        notes.append(f"{lost} picture(s) missing in the middle (first at {float(expected[middle][0]):.2f} s); "
                     "within tolerance, kept")
    return Verdict(None, tuple(notes))


def _nearest_distance(times: np.ndarray, points: np.ndarray) -> np.ndarray:
    """For each point [P], the distance to the nearest of the sorted times [N]."""
    right = np.clip(np.searchsorted(times, points), 0, len(times) - 1)
    left = np.clip(right - 1, 0, len(times) - 1)
    return np.minimum(np.abs(times[right] - points), np.abs(points - times[left]))


def _median_gap(times: np.ndarray) -> float:
    return float(np.median(np.diff(times))) if len(times) > 1 else 0.0


def is_variable_frame_rate(times: np.ndarray, tick: float) -> bool:
    """Whether frame intervals differ from their median by more than VFR_DEVIATION (or 2 ticks of the
    time base, whichever is larger: timestamps are rounded to ticks)."""
    if len(times) < 3:
        return False
    gaps = np.diff(times)
    median = float(np.median(gaps))
    return bool(np.max(np.abs(gaps - median)) > max(VFR_DEVIATION * median, 2 * tick))
