"""Run ffmpeg on one video: every decoded frame of the first video stream as 8-bit RGB, with its time.

Frames come as PPM images on stdout (any pixel format, 10-bit and 4:4:4 included, is converted to rgb24;
rotation metadata is applied, as players do). Each frame's presentation time comes from ffmpeg's
per-frame statistics (`-stats_enc_pre`) on a separate pipe, in the stream's own time base, so
variable-frame-rate timestamps are exact. Messages (warning level and above) are counted on stderr.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

import ffmpeg
import imageio_ffmpeg
import numpy as np
from PIL import Image

FIRST_MESSAGES = 5                 # message lines kept per clip (all are counted)
_ERROR_LEVELS = ("error", "fatal", "panic")
_LINE = re.compile(r"^(?P<ctx>(?:\[[^\]]*\] )*)\[(?P<level>panic|fatal|error|warning|info|verbose|debug|trace)\] "
                   r"(?P<text>.*)$")
# Messages that concern neither the input nor its frames.
_BENIGN = re.compile(r"non monotonically increasing dts|deprecated pixel format used")


class DecoderUnavailable(RuntimeError):
    """ffmpeg could not be started (a problem of the machine, not of the video)."""


@dataclass(frozen=True)
class FfmpegSettings:
    """What the decode produces: every frame (or resampled to fps), optionally resized, at most max_frames."""

    fps: float | None = None
    short_side: int | None = None
    max_frames: int | None = None


@dataclass
class Messages:
    """ffmpeg's messages for one clip: how many, the first few lines, the first at error level."""

    count: int = 0
    first: list[str] = field(default_factory=list)
    first_error: str = ""

    def add(self, line: str, is_error: bool = False) -> None:
        self.count += 1
        if is_error and not self.first_error:
            self.first_error = line
        if len(self.first) < FIRST_MESSAGES:
            self.first.append(line)

    def read(self, stream: IO[bytes]) -> None:
        """Consume ffmpeg's stderr (`-loglevel repeat+level+warning`) line by line."""
        for raw in stream:
            match = _LINE.match(raw.decode(errors="replace").rstrip())
            if match is None:
                continue
            text, level = match["text"].strip(), match["level"]
            if not text or _BENIGN.search(text):
                continue
            context = re.sub(r" @ 0x[0-9a-f]+", "", match["ctx"])
            self.add(f"{level}: {context}{text}", level in _ERROR_LEVELS)


@dataclass
class FfmpegRun:
    """The outcome of one ffmpeg run; `times` has one entry per frame handed to `on_frame`."""

    returncode: int = 0
    times: np.ndarray = field(default_factory=lambda: np.zeros(0))   # [N] float64 seconds
    tick: float = 0.0                                                 # the time base of `times`
    messages: Messages = field(default_factory=Messages)


def ffmpeg_command(path: str, settings: FfmpegSettings, stats_fd: int) -> list[str]:
    """ffmpeg arguments: first video stream -> rgb24 PPM images on stdout, frame times to `stats_fd`."""
    stream = ffmpeg.input(path, nostdin=None, threads=1)["v:0"]
    if settings.fps:
        stream = stream.filter("fps", fps=settings.fps)
    if settings.short_side:
        s = settings.short_side
        stream = stream.filter("scale", f"if(lt(iw,ih),{s},-2)", f"if(lt(iw,ih),-2,{s})", flags="area")
    out_args = {"format": "image2pipe", "vcodec": "ppm", "pix_fmt": "rgb24", "fps_mode": "passthrough",
                "threads": 1, "enc_time_base": "filter", "stats_enc_pre": f"pipe:{stats_fd}",
                "stats_enc_pre_fmt": "{pts} {tb}"}
    if settings.max_frames:
        out_args["frames:v"] = settings.max_frames
    args = stream.output("pipe:", **out_args).compile(cmd=imageio_ffmpeg.get_ffmpeg_exe())
    return [args[0], "-loglevel", "repeat+level+warning", *args[1:]]


def read_ppm(pipe: IO[bytes]) -> Image.Image | None:
    """One binary PPM (P6, maxval 255) from the pipe, or None at end of stream."""
    fields: list[bytes] = []
    while len(fields) < 4:
        line = pipe.readline()
        if not line:
            return None
        fields += line.split()
    if fields[0] != b"P6" or fields[3] != b"255":
        raise ValueError(f"unexpected image header from ffmpeg: {b' '.join(fields)!r}")
    width, height = int(fields[1]), int(fields[2])
    data = pipe.read(width * height * 3)
    if len(data) != width * height * 3:
        return None
    return Image.frombytes("RGB", (width, height), data)


def run_ffmpeg(path: str, settings: FfmpegSettings, on_frame: Callable[[Image.Image], None]) -> FfmpegRun:
    """Decode `path`, calling on_frame per frame in order; exceptions from on_frame stop ffmpeg and propagate."""
    stats_read, stats_write = os.pipe()
    try:
        # no preexec_fn (it would cost a full fork per clip): if this process dies, ffmpeg's next write
        # to its stdout fails (EPIPE) and it exits
        proc = subprocess.Popen(ffmpeg_command(path, settings, stats_write), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(stats_write,))
    except BaseException as e:
        os.close(stats_read)
        if isinstance(e, (OSError, RuntimeError)):
            raise DecoderUnavailable(f"cannot start ffmpeg: {e}") from e
        raise
    finally:
        os.close(stats_write)
    run, stats = FfmpegRun(), []
    readers = [threading.Thread(target=run.messages.read, args=(proc.stderr,), daemon=True),
               threading.Thread(target=lambda: stats.extend(_stat_lines(stats_read)), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        while (image := read_ppm(proc.stdout)) is not None:
            on_frame(image)
    except BaseException:
        proc.kill()
        raise
    finally:
        proc.stdout.close()
        run.returncode = proc.wait()
        for reader in readers:
            reader.join()
        proc.stderr.close()
    run.times, run.tick = _parse_times(stats)
    return run


def _stat_lines(fd: int) -> Iterator[bytes]:
    with os.fdopen(fd, "rb") as pipe:
        yield from pipe


def _parse_times(lines: list[bytes]) -> tuple[np.ndarray, float]:
    """'{pts} {tb}' lines -> (seconds [N], tick); a frame without a timestamp gets NaN."""
    times = np.full(len(lines), np.nan)
    tick = 0.0
    for i, line in enumerate(lines):
        pts, _, base = line.decode().strip().partition(" ")
        num, _, den = base.partition("/")
        if pts.lstrip("-").isdigit() and num.isdigit() and den.isdigit() and int(den):
            tick = int(num) / int(den)
            times[i] = int(pts) * tick
    return times, tick
