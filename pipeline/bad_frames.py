"""Bad frames met while loading: what they are, which pair stands in for a pair that reads one, how many
pairs an epoch may lose (`bad_frame_limit`), and the report (`bad_frames.jsonl` and a warning line).

A pair that reads a bad frame is replaced by the first good pair of `sampling.replacement_candidates`,
a list fixed by (seed, epoch, rank, slot). Whether a frame is bad depends only on its bytes (and on the
decoder), so the batches depend only on the seed and the data: the same with or without a resume, and
the same for both loaders. The ledger below is what a checkpoint keeps of it.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.frame_index import FrameIndex, ShardError
from pipeline.jpeg_check import jpeg_problem
from pipeline.sampling import replacement_candidates
from siammae_common.console import warn


class TooManyBadFrames(ShardError):
    """More of an epoch's pairs read bad frames than the limit allows: the data is broadly damaged."""


@dataclass(frozen=True)
class BadFrame:
    """One frame that cannot be used, and why."""

    key: str                 # clip key
    frame: int               # frame index inside the clip
    shard: str               # the tar that holds it
    error: str

    @classmethod
    def at(cls, index: FrameIndex, clip: int, frame: int, error: str) -> BadFrame:
        """Frame `frame` of clip number `clip` of `index`."""
        return cls(index.key(clip), int(frame), str(index.tars[int(index.clips.shard[clip])]), error)

    def to_json(self) -> dict[str, Any]:
        """The fields of a bad_frames.jsonl line."""
        return {"shard": self.shard, "key": self.key, "frame": self.frame, "error": self.error}


@dataclass(frozen=True)
class Replacement:
    """The pair at plan position `slot` read a bad frame; the pair at `source` was delivered instead."""

    slot: int
    source: int
    bad: tuple[BadFrame, ...]        # the slot's bad frames, then those of any candidate passed over


PairCheck = Callable[[int], list[BadFrame]]   # plan position -> the bad frames of that pair ([] if good)


def frame_code(clip: int, frame: int) -> int:
    """One int per (clip, frame): the key of the known-bad table."""
    return clip << 32 | frame


def crc_problem(data: bytes, crc: int) -> str | None:
    """Why a frame's bytes are not those its shard was written with (None if they are): the CRC-32 differs,
    and what the JPEG check sees of the damage."""
    got = zlib.crc32(data)
    if got == int(crc):
        return None
    seen = jpeg_problem(data)
    return (f"bytes changed since the shard was written (CRC-32 {got:08x}, the frame table says "
            f"{int(crc):08x}){': ' + seen if seen else ''}")


class FrameChecker:
    """What both loaders check on every frame before decoding it: that its bytes are those the shard was
    written with (CRC-32 against the frame table: a frame truncated, overwritten or with flipped bits since
    costs one pair), and that it is not known bad: found bad by the JPEG check when the table was written,
    or by a decoder since (`known_bad`). Picklable (runs in DALI and DataLoader workers)."""

    def __init__(self, index: FrameIndex, known_bad: dict[int, str] | None = None) -> None:
        self.index = index
        self.known_bad = dict(known_bad or {})       # frame_code -> why it is bad
        self._codes = np.array(sorted(self.known_bad), dtype=np.int64)

    def problems(self, clip: int, frames: tuple[int, ...], data: list[bytes], crc: np.ndarray) -> list[BadFrame]:
        """The bad frames among `frames` of `clip`, whose bytes are `data` and table CRCs `crc`."""
        out = []
        for frame, jpeg, want in zip(frames, data, crc.tolist()):
            error = self.known_bad.get(frame_code(clip, frame)) or crc_problem(jpeg, want)
            if error:
                out.append(BadFrame.at(self.index, clip, frame, error))
        return out

    def all_good(self, clips: np.ndarray, frames: np.ndarray, data: list[bytes], crc: np.ndarray) -> bool:
        """The hot path's check of a batch of frames ([N] each): one CRC-32 per frame, compared at once."""
        got = np.fromiter(map(zlib.crc32, data), dtype=np.uint32, count=len(data))
        if not np.array_equal(got, crc):
            return False
        if self._codes.size:
            codes = np.asarray(clips, np.int64) << 32 | np.asarray(frames, np.int64)
            return not np.isin(codes, self._codes).any()
        return True


def replace_pair(slot: int, bad: list[BadFrame], n_pairs: int, seed: int, epoch: int, rank: int,
                 check: PairCheck) -> Replacement:
    """The replacement of the pair at `slot` (whose bad frames are `bad`): the first candidate that passes
    `check`. Raises TooManyBadFrames when none of the candidates is good."""
    found = list(bad)
    for candidate in replacement_candidates(n_pairs, seed, epoch, rank, slot).tolist():
        problems = check(candidate)
        if not problems:
            return Replacement(slot, candidate, tuple(found))
        found.extend(problems)
    raise TooManyBadFrames(f"{bad[0].shard}: no good pair found to replace the pair at position {slot} of "
                           f"epoch {epoch}: every one of its candidates reads a bad frame "
                           f"(e.g. clip {found[-1].key} frame {found[-1].frame}: {found[-1].error})")


class BadFrameLedger:
    """One rank's bad frames: those known (a loader skips them without decoding again), the pairs each epoch
    replaced, the limit on them, and the report: one JSON line per new bad frame plus a warning line."""

    def __init__(self, limit: float, log_path: Path | None = None, rank: int = 0) -> None:
        self.limit, self.log_path, self.rank = limit, log_path, rank
        self.known: dict[tuple[str, int], BadFrame] = {}
        self.epoch = -1
        self.replaced: set[int] = set()             # plan positions of self.epoch that were replaced
        self._reported = self._already_logged()

    def _already_logged(self) -> set[tuple[str, int]]:
        """Frames a previous (resumed) process of this run already wrote to the log."""
        if self.log_path is None or not self.log_path.is_file():
            return set()
        done = set()
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                row = json.loads(line)
                done.add((str(row["key"]), int(row["frame"])))
            except (ValueError, KeyError, TypeError):
                continue                              # a line cut by a crash: the frame is logged again
        return done

    def known_codes(self, index: FrameIndex) -> dict[int, str]:
        """Known bad frames of `index` as {clip << 32 | frame: error}, the form the byte source looks up."""
        out = {}
        for (key, frame), bad in self.known.items():
            clip = index.clip_of(bad.shard, key)
            if clip is not None:
                out[frame_code(clip, frame)] = bad.error
        return out

    def learn(self, frames: Iterable[BadFrame]) -> int:
        """Add frames found bad by a decoder; returns how many were new."""
        new = 0
        for bad in frames:
            if (bad.key, bad.frame) not in self.known:
                self.known[(bad.key, bad.frame)] = bad
                new += 1
        return new

    def allowed(self, pairs_per_epoch: int) -> int:
        """Pairs an epoch may replace before the run stops."""
        return math.floor(self.limit * pairs_per_epoch + 1e-9)

    def record(self, epoch: int, replacements: Iterable[Replacement], pairs_per_epoch: int) -> None:
        """Count replaced pairs of `epoch`, report new bad frames; raises TooManyBadFrames over the limit."""
        if epoch != self.epoch:
            self.epoch, self.replaced = epoch, set()
        allowed = self.allowed(pairs_per_epoch)
        for rep in replacements:
            self.replaced.add(rep.slot)
            self.learn(rep.bad)
            for bad in rep.bad:
                self._report(bad, epoch, allowed)
        if len(self.replaced) > allowed:
            where = f" (listed in {self.log_path})" if self.log_path is not None else ""
            raise TooManyBadFrames(
                f"{len(self.replaced)} of the {pairs_per_epoch} pairs of epoch {epoch} (rank {self.rank}) read "
                f"a bad frame, more than --bad-frame-limit {self.limit} allows ({allowed}): the shards look "
                f"broadly damaged{where}; repair or remake them, or raise --bad-frame-limit")

    def _report(self, bad: BadFrame, epoch: int, allowed: int) -> None:
        if (bad.key, bad.frame) in self._reported:
            return
        self._reported.add((bad.key, bad.frame))
        warn(f"bad frame skipped: {bad.shard} clip {bad.key} frame {bad.frame}: {bad.error}; pair replaced "
             f"({len(self.replaced)} in epoch {epoch}, --bad-frame-limit allows {allowed})")
        if self.log_path is not None:
            row = {**bad.to_json(), "epoch": epoch, "rank": self.rank}
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:                                      # one write per line: ranks may share the file
                os.write(fd, (json.dumps(row) + "\n").encode())
            finally:
                os.close(fd)

    def state_dict(self) -> dict[str, Any]:
        """Plain containers only (a checkpoint loads with torch.load(weights_only=True))."""
        return {"frames": [[b.key, b.frame, b.shard, b.error] for b in self.known.values()],
                "epoch": self.epoch, "replaced": sorted(self.replaced)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take over a checkpoint's ledger (known frames are added to those already known)."""
        self.learn(BadFrame(str(k), int(f), str(s), str(e)) for k, f, s, e in state.get("frames", []))
        self.epoch = int(state.get("epoch", -1))
        self.replaced = {int(p) for p in state.get("replaced", [])}
