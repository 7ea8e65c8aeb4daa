"""Decode one video into checked baseline JPEG frames with their times, and judge the clip; runs in a worker.

Three outcomes: a clip (possibly with recorded messages), a bad input (`error`: recorded in the manifest's
failures), or an environment failure (`deferred`: the decoder was killed, memory ran out; not recorded,
so the next run retries it).
"""

from __future__ import annotations

import errno
import io
import math
import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tools.sharding.ffmpeg_run import DecoderUnavailable, FfmpegRun, FfmpegSettings, run_ffmpeg
from tools.sharding.judge import Verdict, judge
from tools.sharding.judge import is_variable_frame_rate as is_vfr
from tools.sharding.probe import NotAVideo, StreamFacts, probe_stream

# A decoder that crashes on a file is a bad input (recorded; --retry-failed retries it). Any other
# signal (SIGKILL from the out-of-memory killer, SIGTERM from a scheduler) is the environment's doing.
CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGABRT}
ENVIRONMENT_ERRNOS = {errno.ENOMEM, errno.ENOSPC, errno.EDQUOT, errno.EMFILE, errno.ENFILE, errno.EAGAIN}


@dataclass(frozen=True)
class DecodeOptions:
    fps: float | None = None          # resample to a constant rate; None keeps every decoded frame
    short_side: int | None = None     # resize so the shorter side has this length; None keeps the size
    quality: int = 90                 # JPEG quality (baseline, 4:2:0)
    max_frames: int | None = None
    min_frames: int = 8
    keep_damaged: bool = False        # keep truncated or damaged clips (what decoded of them)
    strict: bool = False              # any decoder error rejects the clip

    def __post_init__(self) -> None:
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):     # NaN fails both
            raise ValueError(f"fps {self.fps}: must be a finite number above 0")
        limits = {"short_side": 8, "max_frames": 1, "min_frames": 1}
        for name, low in limits.items():
            if getattr(self, name) is not None and getattr(self, name) < low:
                raise ValueError(f"{name} {getattr(self, name)}: must be at least {low}")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"quality {self.quality}: must be between 1 and 100")


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
    frames: list[bytes] | None = None       # JPEGs of a kept clip
    meta: dict | None = None
    pts: np.ndarray | None = None           # [N] float64 seconds
    messages: tuple[int, tuple[str, ...]] = (0, ())   # (count, first lines) for a kept clip
    error: str | None = None                # a bad input: why it produced no clip
    deferred: str | None = None             # an environment failure: retried by the next run


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    """Baseline (not progressive) 4:2:0 8-bit JPEG, decoded once to check it.

    The check decodes at 1/8 scale: that reads every byte of the entropy-coded data (so a broken stream
    fails as in a full decode) and skips most of the inverse DCT, a third of a full decode's time.
    """
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality, subsampling=2, progressive=False, optimize=False)
    data = buf.getvalue()
    with Image.open(io.BytesIO(data), formats=("JPEG",)) as check:
        if check.size != image.size:
            raise ValueError(f"JPEG check failed: it says {check.size}, the frame is {image.size}")
        check.draft("RGB", (max(1, check.width // 8), max(1, check.height // 8)))
        check.load()
    return data


def decode_video(job: DecodeJob) -> DecodeResult:
    """Decode and judge one video; never raises (every problem is a failure or an environment failure)."""
    try:
        return _decode(job)
    except MemoryError:
        return DecodeResult(job.key, job.source, deferred="out of memory")
    except OSError as e:
        if e.errno in ENVIRONMENT_ERRNOS:
            return DecodeResult(job.key, job.source, deferred=f"{e.strerror or e}")
        return DecodeResult(job.key, job.source, error=f"cannot read: {e.strerror or e}")
    except Exception as e:  # noqa: BLE001 (one odd file must not end a run of days)
        return DecodeResult(job.key, job.source, error=f"unexpected {type(e).__name__}: {e}")


def lost_job(job: DecodeJob, reason: str) -> DecodeResult:
    """The result for a job whose worker died (an environment failure)."""
    return DecodeResult(job.key, job.source, deferred=reason)


def _decode(job: DecodeJob) -> DecodeResult:
    opts = job.options

    def fail(reason: str) -> DecodeResult:
        return DecodeResult(job.key, job.source, error=reason)

    if Path(job.path).stat().st_size == 0:
        return fail("empty file (0 bytes)")
    try:
        facts = probe_stream(job.path)
    except NotAVideo as e:
        return fail(f"not a readable video: {e}")
    frames: list[bytes] = []
    size = [0, 0]

    def keep(image: Image.Image) -> None:
        size[:] = image.size
        frames.append(encode_jpeg(image, opts.quality))

    try:
        run = run_ffmpeg(job.path, FfmpegSettings(opts.fps, opts.short_side, opts.max_frames), keep)
    except DecoderUnavailable as e:
        return DecodeResult(job.key, job.source, deferred=str(e))
    except (ValueError, OSError) as e:
        if isinstance(e, OSError) and e.errno in ENVIRONMENT_ERRNOS:
            raise
        return fail(f"frame {len(frames)}: {e}")
    if run.returncode < 0:
        name = signal.Signals(-run.returncode).name if -run.returncode in signal.valid_signals() else "?"
        if -run.returncode in CRASH_SIGNALS:
            return fail(f"ffmpeg crashed ({name}) on this file")
        return DecodeResult(job.key, job.source, deferred=f"ffmpeg was killed by {name}")
    first_error = run.messages.first_error
    if not frames:
        return fail(f"no frames decoded ({first_error or f'ffmpeg exit status {run.returncode}'})")
    if len(run.times) != len(frames):
        return fail(f"ffmpeg reported {len(run.times)} frame times for {len(frames)} frames")
    if opts.strict and first_error:
        return fail(f"decoder errors (--strict rejects them): {first_error}")
    return _judged(job, facts, run, frames, (size[0], size[1]))


def _judged(job: DecodeJob, facts: StreamFacts, run: FfmpegRun, frames: list[bytes],
            size: tuple[int, int]) -> DecodeResult:
    opts, notes, messages = job.options, [], run.messages
    times = run.times
    if np.isnan(times).any():             # cannot judge by outcome without times: keep what decoded
        interval = 1 / opts.fps if opts.fps else facts.frame_interval or 0.04
        times = np.arange(len(frames)) * interval
        notes.append(f"the decoder gave no timestamps; stored times are frame index x {interval:.4g} s")
        verdict = Verdict(None)
    else:
        verdict = judge(facts, np.sort(times), resampled_interval=1 / opts.fps if opts.fps else None,
                        stopped_at_limit=bool(opts.max_frames and len(frames) >= opts.max_frames))
    if run.returncode != 0:
        notes.append(f"ffmpeg exit status {run.returncode}")
    if verdict.problem and not opts.keep_damaged:
        said = messages.first_error or (messages.first[0] if messages.first else "")
        return DecodeResult(job.key, job.source, error=f"{verdict.problem}{f'; ffmpeg said {said!r}' if said else ''}"
                                                       " (--keep-damaged keeps such clips)")
    if len(frames) < opts.min_frames:
        return DecodeResult(job.key, job.source,
                            error=f"too short: {len(frames)} frames < --min-frames {opts.min_frames}")
    notes += [*verdict.notes, *([f"{verdict.problem}; kept (--keep-damaged)"] if verdict.problem else [])]
    first = (*(f"make_shards: {n}" for n in notes), *messages.first)
    meta = {"class_name": job.class_name, "label": job.label, "source": job.source,
            "fps": float(opts.fps or facts.rate), "vfr": is_vfr(times, run.tick),
            "width": size[0], "height": size[1]}
    return DecodeResult(job.key, job.source, frames, meta, times, (messages.count + len(notes), first))
