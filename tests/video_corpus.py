"""Real-world video peculiarities, each made with the ffmpeg binary the setup installs (imageio-ffmpeg's),
tiny (64x48, a second or two) so the whole corpus is made in a few seconds. Nothing is downloaded.

`make_corpus(root)` writes the files and returns {relative path: what make_shards must do with it}.
"""

from __future__ import annotations

import random
import re
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
SIZE = "64x48"
KEEP, TRUNCATED, NO_VIDEO, KEEP_OR_DAMAGED = "keep", "truncated", "no video stream", "keep or damaged"


def ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-v", "error", "-y", *args], check=True)


def lavfi_source(seconds: float, size: str = SIZE, rate: int = 25) -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]


def write_class_clips(root: Path, classes: int, per_class: int, seconds: float) -> Path:
    """root/C<c>/clip<i>.avi: short mpeg4 test-pattern clips, the i-th 0.04 s longer than the one before."""
    for c in range(classes):
        (root / f"C{c}").mkdir(parents=True)
        for i in range(per_class):
            ffmpeg(*lavfi_source(seconds + 0.04 * i), "-c:v", "mpeg4", str(root / f"C{c}" / f"clip{i}.avi"))
    return root


def x264(*params: str) -> list[str]:
    return ["-c:v", "libx264", "-preset", "ultrafast", *(["-x264-params", ":".join(params)] if params else [])]


def ffmpeg_frame_count(path: Path) -> int:
    """ffmpeg's own count of the frames it decodes from the first video stream (`-f null`)."""
    err = subprocess.run([FFMPEG, "-nostdin", "-i", str(path), "-map", "0:v:0", "-fps_mode", "passthrough",
                          "-f", "null", "-"], capture_output=True, check=False, text=True).stderr
    return int(re.findall(r"frame=\s*(\d+)", err)[-1])


def ffmpeg_frames(path: Path, width: int, height: int) -> np.ndarray:
    """ffmpeg's own decode of every frame as 8-bit RGB [N, H, W, 3] (rotation applied, as players do)."""
    raw = subprocess.run([FFMPEG, "-v", "error", "-nostdin", "-i", str(path), "-map", "0:v:0", "-fps_mode",
                          "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True,
                         check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


def h264_with_a_stray_idr_slice(path: Path) -> None:
    """An H.264 mp4 whose decoder prints 'A non-intra slice in an IDR NAL unit.' (error level) while every
    frame decodes: the second slice of one P-frame is relabelled as an IDR slice, so it is dropped and
    concealed, as in a phone video the old make_shards rejected although all its frames decode."""
    raw = path.with_suffix(".h264")
    ffmpeg(*lavfi_source(2), *x264("slices=2"), "-pix_fmt", "yuv420p", "-bsf:v", "h264_mp4toannexb", "-f", "h264",
           str(raw))
    data = bytearray(raw.read_bytes())
    # NAL units after 00 00 01; a non-IDR slice (type 1) whose first_mb_in_slice is not 0 (first bit 0)
    second_slices = [m.end() for m in re.finditer(b"\x00\x00\x01", data)
                     if data[m.end()] & 0x1F == 1 and not data[m.end() + 1] & 0x80]
    data[second_slices[10]] = (data[second_slices[10]] & 0xE0) | 5
    raw.write_bytes(bytes(data))
    ffmpeg("-r", "25", "-i", str(raw), "-c", "copy", str(path))
    raw.unlink()


def overwrite(path: Path, source: Path, at: float, length: int, seed: int) -> None:
    """A copy of `source` with `length` random bytes written over it at fraction `at` of its size."""
    data = bytearray(source.read_bytes())
    start = int(len(data) * at)
    data[start:start + length] = random.Random(seed).randbytes(length)
    path.write_bytes(bytes(data))


def make_corpus(root: Path) -> dict[str, str]:
    """Write the corpus under `root`; returns {source relative to root: expected outcome}."""
    v = root / "real"
    v.mkdir(parents=True)
    ffmpeg(*lavfi_source(2), *x264("keyint=12", "bframes=3", "b-pyramid=normal", "open-gop=1"), "-pix_fmt", "yuv420p",
           str(v / "h264_bframes_open_gop.mp4"))
    ffmpeg(*lavfi_source(1.2), "-c:v", "libxvid", "-bf", "2", "-q:v", "4", str(v / "xvid_packed_bframes.avi"))
    # 26 of 40 frames dropped (a still scene): AVI keeps them as empty chunks, which decode to nothing
    ffmpeg(*lavfi_source(1.6), "-vf", "select='not(between(n\\,2\\,12))*not(between(n\\,20\\,34))'", "-fps_mode",
           "passthrough", "-c:v", "cinepak", str(v / "cinepak_dropped_frames.avi"))
    ffmpeg(*lavfi_source(1.04), "-vf", "setpts='(N+if(gt(N,10),8,0)-if(eq(mod(N,3),0),0.5,0))/25/TB'", *x264(),
           "-pix_fmt", "yuv420p", "-fps_mode", "passthrough", str(v / "variable_frame_rate.mp4"))
    ffmpeg("-display_rotation", "90", "-i", str(v / "h264_bframes_open_gop.mp4"), "-c", "copy",
           str(v / "phone_rotated.mp4"))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=322x242:rate=25:duration=0.4,format=rgb24,crop=321:241",
           "-c:v", "mpeg4", "-q:v", "5", "-pix_fmt", "yuv420p", str(v / "odd_321x241.avi"))
    ffmpeg(*lavfi_source(1), *x264(), "-pix_fmt", "yuv420p10le", str(v / "h264_10bit.mp4"))
    ffmpeg(*lavfi_source(1), *x264(), "-pix_fmt", "yuv444p10le", str(v / "h264_444_10bit.mkv"))
    ffmpeg(*lavfi_source(1), "-f", "lavfi", "-i", "testsrc=size=32x24:rate=10:duration=1", "-map", "0", "-map", "1",
           "-c:v", "mpeg4", str(v / "two_video_streams.mkv"))
    h264_with_a_stray_idr_slice(v / "h264_error_line_every_frame.mp4")
    ffmpeg("-ss", "0.5", "-i", str(v / "h264_bframes_open_gop.mp4"), "-t", "1", "-c", "copy",
           str(v / "trimmed_edit_list.mp4"))
    bad = root / "bad"
    bad.mkdir()
    ffmpeg("-f", "lavfi", "-i", "sine=duration=0.5", "-c:a", "aac", str(bad / "audio_only.mp4"))
    ffmpeg(*lavfi_source(2), "-c:v", "mpeg4", "-q:v", "3", str(bad / "ucf_like.avi"))
    data = (bad / "ucf_like.avi").read_bytes()
    (bad / "last_4kb_cut.avi").write_bytes(data[:-4096])
    (bad / "ucf_like.avi").unlink()
    fast = bad / "faststart.mp4"
    ffmpeg(*lavfi_source(2), *x264(), "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(fast))
    overwrite(bad / "garbage_over_one_frame.mp4", fast, 0.5, 64, seed=0)
    overwrite(bad / "garbage_over_many_frames.mp4", fast, 0.5, 1024, seed=0)
    (bad / "last_4kb_cut.mp4").write_bytes(fast.read_bytes()[:-4096])
    fast.unlink()
    good = {f"real/{p.name}": KEEP for p in v.iterdir()}
    return good | {"bad/audio_only.mp4": NO_VIDEO, "bad/last_4kb_cut.avi": TRUNCATED,
                   "bad/last_4kb_cut.mp4": TRUNCATED, "bad/garbage_over_one_frame.mp4": KEEP,
                   "bad/garbage_over_many_frames.mp4": KEEP_OR_DAMAGED}


def _testsrc(frames: int) -> list[str]:
    """testsrc2 at 64x48, 25 frames/s, this many frames."""
    return lavfi_source(frames / 25)


def write_mixed_videos(root: Path) -> Path:
    """Good videos in several codecs and containers, plus one of each kind of bad input (GOOD, BAD)."""
    (root / "A").mkdir()
    (root / "B").mkdir()
    ffmpeg(*_testsrc(30), "-c:v", "mpeg4", "-q:v", "3", str(root / "A" / "mpeg4.avi"))
    ffmpeg(*_testsrc(27), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            str(root / "A" / "h264.mp4"))
    ffmpeg(*_testsrc(22), "-c:v", "mjpeg", "-q:v", "3", "-pix_fmt", "yuvj420p", str(root / "B" / "mjpeg.mkv"))
    # variable frame rate: frames 10.. come 0.3 s later, and some frames are 1/50 s apart
    ffmpeg(*_testsrc(26), "-vf", "setpts='(N+if(gt(N,10),8,0)-if(eq(mod(N,3),0),0.5,0))/25/TB'",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-fps_mode", "passthrough",
            str(root / "B" / "vfr.mp4"))
    ffmpeg(*_testsrc(25), "-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:v", "mpeg4",
            "-c:a", "aac", "-shortest", str(root / "B" / "with audio.mov"))          # also a space in the name
    (root / "B" / "empty.avi").write_bytes(b"")
    (root / "B" / "notes.mp4").write_text("this is not a video\n")
    data = (root / "A" / "mpeg4.avi").read_bytes()
    (root / "B" / "truncated.avi").write_bytes(data[:len(data) // 2])
    ffmpeg(*_testsrc(5), "-c:v", "mpeg4", str(root / "B" / "short.avi"))
    (root / "B" / "readme.txt").write_text("ignored: not a video extension\n")
    return root


GOOD = {"A/mpeg4.avi", "A/h264.mp4", "B/mjpeg.mkv", "B/vfr.mp4", "B/with audio.mov"}
BAD = {"B/empty.avi": "empty", "B/notes.mp4": "not a readable video", "B/truncated.avi": "",
       "B/short.avi": "too short"}
