"""What a video's container says about its first video stream, and what its packets show, read with PyAV.

This is one pass over the packets without decoding (about a millisecond for a short clip). It gives the
judgement in `judge.py` the times at which pictures should appear, so decoding is judged by its outcome:
where the stream should end, which pictures are expected, and whether the file ends early.
All times are seconds on ffmpeg's output timeline (the file's start time is 0), like the frame times.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

# Packets this small carry no picture data: placeholders such as MPEG-4's not-coded VOPs ("N-VOPs",
# written by DivX/Xvid for dropped frames and by packed B-frame streams), which decoders may or may not
# turn into a frame. The smallest real pictures seen here (an all-skip H.264 P-frame at 64x48) are 9 bytes.
PLACEHOLDER_BYTES = 8


class NotAVideo(ValueError):
    """The file cannot be opened as a video (no video stream, not a media file, unreadable)."""


@dataclass(frozen=True)
class StreamFacts:
    """The first video stream: its declared timing and the times of the pictures its packets hold."""

    codec: str
    rate: float                    # nominal frames/s (average, else guessed); 0 when the file does not say
    declared_end: float | None     # where the container says the stream ends; None when it does not say
    picture_times: np.ndarray      # [P] float64, sorted: packets that should each show a picture
    untimed_pictures: int          # packets without a timestamp (e.g. leading pictures of a trimmed file)
    packets_end: float             # end of the last packet's display time (its time + duration)
    cut_short: str | None          # how the data ended early (a partial packet, a read error), else None

    @property
    def frame_interval(self) -> float:
        return 1.0 / self.rate if self.rate > 0 else 0.0


def probe_stream(path: str) -> StreamFacts:
    """Open `path` with PyAV and scan the packets of its first video stream; raises NotAVideo."""
    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise NotAVideo(str(e)) from None
    with container:
        if not container.streams.video:
            raise NotAVideo("no video stream")
        stream = container.streams.video[0]
        offset = container.start_time / av.time_base if container.start_time is not None else 0.0
        rate = stream.average_rate or stream.guessed_rate or Fraction(0)
        times, ends, untimed, cut = _scan_packets(container, stream)
        base = float(stream.time_base)
        picture_times = np.sort(np.asarray(times, dtype=np.float64)) * base - offset
        packets_end = (max(ends) * base - offset) if ends else 0.0
        return StreamFacts(stream.codec_context.name, float(rate), _declared_end(container, stream, offset),
                           picture_times, untimed, packets_end, cut)


def _scan_packets(container: av.container.InputContainer,
                  stream: av.video.stream.VideoStream) -> tuple[list[int], list[int], int, str | None]:
    """(picture timestamps, packet end timestamps, untimed pictures, how the data ended early or None)."""
    times: list[int] = []
    ends: list[int] = []
    untimed, last_corrupt, cut = 0, False, None
    try:
        for packet in container.demux(stream):
            if packet.size == 0 or packet.is_discard:      # flush packets; pre-roll an edit list hides
                continue
            ts = packet.pts if packet.pts is not None else packet.dts
            last_corrupt = packet.is_corrupt
            if ts is None:
                untimed += packet.size > PLACEHOLDER_BYTES
                continue
            ends.append(ts + max(packet.duration or 0, 0))
            if packet.size > PLACEHOLDER_BYTES:
                times.append(ts)
    except av.error.FFmpegError as e:
        cut = f"reading stopped after {len(ends)} packets ({e})"
    if cut is None and last_corrupt:
        cut = "the last packet is incomplete (the file ends inside it)"
    return times, ends, untimed, cut


def _declared_end(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                  offset: float) -> float | None:
    """Where the container says the stream ends, on the output timeline; None when it does not say.

    AVI counts every chunk of the stream in its header, including empty ("dropped frame") chunks, so
    frames x frame duration is its length even when the index at the end of the file is missing.
    """
    base = float(stream.time_base)
    start = stream.start_time or 0
    ends = []
    if stream.duration:
        ends.append((start + stream.duration) * base - offset)
    if container.format.name == "avi" and stream.frames:
        ends.append((start + stream.frames) * base - offset)
    return max(ends) if ends else None
