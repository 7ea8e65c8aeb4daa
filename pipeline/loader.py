"""The loader entry point: `build_pair_loader(cfg)` returns the DALI loader or the webdataset fallback.

Both are iterables of `PairBatch` (one epoch per iteration) with `len()` = batches per epoch for this
rank and `set_epoch(epoch)`; pairs depend only on (cfg.seed, epoch, rank), see `pipeline.sampling`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from pipeline.batch import PairBatch
from pipeline.config import LoaderConfig
from pipeline.frame_index import FrameIndex


class PairLoader(Protocol):
    cfg: LoaderConfig
    index: FrameIndex

    def __iter__(self) -> Iterator[PairBatch]: ...
    def __len__(self) -> int: ...
    def set_epoch(self, epoch: int) -> None: ...
    def close(self) -> None: ...


def build_pair_loader(cfg: LoaderConfig) -> PairLoader:
    """A loader of (f1, f2) pair batches [B, 3, S, S] on cfg.device; raises ShardError on bad shards."""
    index = FrameIndex.load(cfg.shards)
    if cfg.kind == "dali":
        try:
            from pipeline.dali_loader import DaliPairLoader
        except ImportError as exc:  # pragma: no cover - machines without DALI
            raise ImportError(f"DALI is not importable ({exc}); use the fallback: --loader wds") from exc
        return DaliPairLoader(cfg, index)
    if cfg.kind == "wds":
        from pipeline.wds_loader import WdsPairLoader
        return WdsPairLoader(cfg, index)
    raise ValueError(f"unknown loader kind {cfg.kind!r} (choose dali or wds)")
