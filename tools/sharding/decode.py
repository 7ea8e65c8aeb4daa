"""Decode one video with ffmpeg (via ffmpeg-python) into checked baseline JPEG frames; runs in a worker process."""

from __future__ import annotations

import io
import re
import subprocess
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO

import av
import ffmpeg
import imageio_ffmpeg
from PIL import Image

# Messages that do not mean a frame was lost: the output muxer complaining about odd input timestamps
# (frames are still written once each, in order; the frame-count tests check that).
_BENIGN = re.compile(r"non monotonically increasing dts|^\s*Last message repeated")


@dataclass(frozen=True)
class DecodeOptions:
    fps: float | None = None          # resample to a constant rate; None keeps every decoded frame
    short_side: int | None = None     # resize so the shorter side has this length; None keeps the size
    quality: int = 90                 # JPEG quality (baseline, 4:2:0)
    max_frames: int | None = None
    min_frames: int = 8
    keep_damaged: bool = False        # keep clips whose decoding reported errors


@dataclass(frozen=True)
class DecodeJob:
    path: str
    source: str
    key: str
    class_name: str
    label: int
    options: DecodeOptions


@dataclass(frozen=True)
class DecodeResult:
    key: str
    source: str
    frames: list[bytes] | None        # JPEGs, or None on failure
    meta: dict | None
    error: str | None = None


def probe(path: str) -> tuple[float, int]:
    """(frame rate, frames the container declares or 0) of the first video stream, read with PyAV."""
    with av.open(path) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or Fraction(0)
        return float(rate), int(stream.frames or 0)


def ffmpeg_command(path: str, options: DecodeOptions) -> list[str]:
    """ffmpeg arguments: first video stream -> PPM images on stdout, every decoded frame exactly once."""
    stream = ffmpeg.input(path, nostdin=None, threads=1)["v:0"]
    if options.fps:
        stream = stream.filter("fps", fps=options.fps)
    if options.short_side:
        s = options.short_side
        stream = stream.filter("scale", f"if(lt(iw,ih),{s},-2)", f"if(lt(iw,ih),-2,{s})", flags="area")
    out_args = {"format": "image2pipe", "vcodec": "ppm", "fps_mode": "passthrough", "threads": 1}
    if options.max_frames:
        out_args["frames:v"] = options.max_frames
    args = stream.output("pipe:", **out_args).compile(cmd=imageio_ffmpeg.get_ffmpeg_exe())
    return [args[0], "-v", "error", *args[1:]]


def _read_ppm(pipe: IO[bytes]) -> Image.Image | None:
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


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    """Baseline (not progressive) 4:2:0 JPEG, decoded once to check it."""
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality, subsampling=2, progressive=False, optimize=False)
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as check:
        check.load()
        if check.size != image.size:
            raise ValueError(f"JPEG decode check failed: {check.size} != {image.size}")
    return data


def decode_video(job: DecodeJob) -> DecodeResult:
    """Run ffmpeg on one video; any problem becomes a DecodeResult with `error` set (never raises)."""
    def fail(reason: str) -> DecodeResult:
        return DecodeResult(job.key, job.source, None, None, reason)

    opts = job.options
    try:
        if Path(job.path).stat().st_size == 0:
            return fail("empty file (0 bytes)")
        rate, declared = probe(job.path)
    except (av.error.FFmpegError, ValueError, OSError) as e:
        return fail(f"not a readable video: {e}")
    proc = subprocess.Popen(ffmpeg_command(job.path, opts), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    errors: list[bytes] = []
    reader = threading.Thread(target=lambda: errors.extend(proc.stderr.read().splitlines()), daemon=True)
    reader.start()
    frames: list[bytes] = []
    size = (0, 0)
    try:
        while (image := _read_ppm(proc.stdout)) is not None:
            size = image.size
            frames.append(encode_jpeg(image, opts.quality))
    except Exception as e:  # noqa: BLE001 (a bad frame must not stop the run)
        proc.kill()
        proc.wait()
        return fail(f"frame {len(frames)}: {e}")
    finally:
        proc.stdout.close()
    returncode = proc.wait()
    reader.join()
    messages = [re.sub(r" @ 0x[0-9a-f]+", "", e.decode(errors="replace").strip()) for e in errors]
    messages = [m for m in messages if m and not _BENIGN.search(m)]
    first_error = messages[0] if messages else ""
    if returncode != 0:
        return fail(f"ffmpeg exit status {returncode}: {first_error or 'no message'}")
    if not frames:
        return fail(f"no frames decoded{': ' + first_error if first_error else ''}")
    if not opts.keep_damaged:
        if first_error:
            return fail(f"decode errors (corrupt or truncated; --keep-damaged keeps such clips): {first_error}")
        expected = min(declared, opts.max_frames or declared)
        if not opts.fps and expected and len(frames) < 0.9 * expected - 2:
            return fail(f"truncated: decoded {len(frames)} of the {declared} frames the container declares")
    if len(frames) < opts.min_frames:
        return fail(f"too short: {len(frames)} frames < --min-frames {opts.min_frames}")
    meta = {"class_name": job.class_name, "label": job.label, "source": job.source,
            "fps": float(opts.fps or rate), "width": size[0], "height": size[1]}
    return DecodeResult(job.key, job.source, frames, meta)
