"""Reference loaders the benchmark compares against, all drawing the pairs of the same PairPlan and
applying the same Pillow crop/resize/flip: PyAV decoding from the raw video per pair (the naive
approach), one ffmpeg process per frame, and Pillow over pre-extracted JPEG frame folders."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from pipeline.frame_index import FrameIndex, FrameReader
from pipeline.pil_ops import augment_pair, decode_jpeg
from pipeline.sampling import PairPlan


class CountingFile(io.RawIOBase):
    """A read-only file that counts the bytes handed to its reader (PyAV reads through it)."""

    def __init__(self, path: Path) -> None:
        self._f = open(path, "rb")  # noqa: SIM115 - closed in close()
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        n = self._f.readinto(buf)
        self.bytes_read += n or 0
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        self._f.close()
        super().close()


class _PlanDataset(Dataset):
    """Item p = plan position p; returns (f1 [3,S,S] uint8, f2, bytes read)."""

    def __init__(self, plan: PairPlan, size: int) -> None:
        self.plan, self.size = plan, size

    def __len__(self) -> int:
        return len(self.plan)

    def frames(self, p: int) -> tuple[Image.Image, Image.Image, int]:
        raise NotImplementedError

    def __getitem__(self, p: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        a, b, nbytes = self.frames(p)
        f1, f2 = augment_pair(a, b, self.plan.crop[p], bool(self.plan.flip[p]), self.size)
        return f1, f2, nbytes


class PyAVPairs(_PlanDataset):
    """The naive loader: per pair, open the video and decode from the start up to frame j."""

    def __init__(self, plan: PairPlan, size: int, videos: list[Path]) -> None:
        super().__init__(plan, size)
        self.videos = videos                                 # per clip index

    def frames(self, p: int) -> tuple[Image.Image, Image.Image, int]:
        i, j = int(self.plan.i[p]), int(self.plan.j[p])
        raw = CountingFile(self.videos[int(self.plan.clip[p])])
        got: dict[int, Image.Image] = {}
        with av.open(raw) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for n, frame in enumerate(container.decode(stream)):
                if n == i or n == j:
                    got[n] = frame.to_image()
                if n >= j:
                    break
        if j not in got:
            raise ValueError(f"{self.videos[int(self.plan.clip[p])]}: has fewer than {j + 1} frames")
        return got[i], got[j], raw.bytes_read


class FfmpegPairs(_PlanDataset):
    """One ffmpeg process per frame, selecting the frame by number (what many scripts do)."""

    def __init__(self, plan: PairPlan, size: int, videos: list[Path], ffmpeg: str) -> None:
        super().__init__(plan, size)
        self.videos, self.ffmpeg = videos, ffmpeg

    def _frame(self, path: Path, n: int) -> Image.Image:
        cmd = [self.ffmpeg, "-v", "error", "-i", str(path), "-vf", f"select=eq(n\\,{n})", "-fps_mode",
               "passthrough", "-frames:v", "1", "-f", "image2pipe", "-c:v", "bmp", "-"]
        done = subprocess.run(cmd, capture_output=True, check=True)
        return Image.open(io.BytesIO(done.stdout)).convert("RGB")

    def frames(self, p: int) -> tuple[Image.Image, Image.Image, int]:
        path = self.videos[int(self.plan.clip[p])]
        size = path.stat().st_size          # each process reads the file from its start (upper bound)
        return self._frame(path, int(self.plan.i[p])), self._frame(path, int(self.plan.j[p])), 2 * size


class JpegFolderPairs(_PlanDataset):
    """Pillow over pre-extracted frames: `<root>/<key>/<frame:06d>.jpg`, two files per pair."""

    def __init__(self, plan: PairPlan, size: int, root: Path, index: FrameIndex) -> None:
        super().__init__(plan, size)
        self.root = root
        self.keys = {c: index.key(c) for c in np.unique(plan.clip).tolist()}     # the clips the plan reads

    def frames(self, p: int) -> tuple[Image.Image, Image.Image, int]:
        folder = self.root / self.keys[int(self.plan.clip[p])]
        imgs, nbytes = [], 0
        for n in (int(self.plan.i[p]), int(self.plan.j[p])):
            data = (folder / f"{n:06d}.jpg").read_bytes()
            nbytes += len(data)
            imgs.append(decode_jpeg(data))
        return imgs[0], imgs[1], nbytes


def extract_frame_folders(index: FrameIndex, clips: np.ndarray, root: Path) -> int:
    """Write the JPEGs of the given clips as frame folders under root; returns bytes written."""
    reader = FrameReader(index)
    total = 0
    for c in np.unique(clips).tolist():
        folder = root / index.key(c)
        folder.mkdir(parents=True, exist_ok=True)
        n = int(index.n_frames[c])
        for t, data in enumerate(reader.read(np.full(n, c), np.arange(n))):
            (folder / f"{t:06d}.jpg").write_bytes(data.tobytes())
            total += len(data)
    reader.close()
    return total


def find_videos(index: FrameIndex, videos_root: Path) -> list[Path]:
    """Per clip, the raw video it was made from (the meta's source, else a file named after the key)."""
    by_stem: dict[str, Path] = {}
    for dirpath, _, files in os.walk(videos_root):
        for f in files:
            by_stem.setdefault(Path(f).stem, Path(dirpath) / f)
    out = []
    for c in range(len(index)):
        key, meta = index.key(c), index.meta(c)
        source = str(meta.get("source", ""))
        candidates = [Path(source), videos_root / source] if source else []
        found = next((c for c in candidates if c.is_file()), None) or by_stem.get(key)
        if found is None:
            raise FileNotFoundError(f"{videos_root}: no video for clip {key} (source {source!r})")
        out.append(found)
    return out
