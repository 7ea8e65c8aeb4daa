"""The loader entry point: `build_pair_loader(cfg)` returns the DALI loader or the webdataset fallback.

Both are iterables of `PairBatch` (one epoch per iteration) with `len()` = batches per epoch for this
rank and `set_epoch(epoch)`; pairs depend only on (cfg.seed, epoch, rank), see `pipeline.sampling`.
Both take the opened shard folder (`pipeline.dataset.ShardDataset`); a caller that opened it already
(the trainer, to check its options) hands it over, so the folder is opened once per process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from pipeline.batch import PairBatch
from pipeline.config import LoaderConfig
from pipeline.dataset import ShardDataset


class PairLoader(Protocol):
    cfg: LoaderConfig
    data: ShardDataset

    def __iter__(self) -> Iterator[PairBatch]: ...
    def __len__(self) -> int: ...
    def set_epoch(self, epoch: int) -> None: ...
    def close(self) -> None: ...


def build_pair_loader(cfg: LoaderConfig, data: ShardDataset | None = None) -> PairLoader:
    """A loader of (f1, f2) pair batches [B, 3, S, S] on cfg.device over `data` (else cfg.shards, opened
    here); raises ShardError on bad shards, sampling.EpochTooShort when a step exceeds an epoch."""
    if cfg.kind not in ("dali", "wds"):
        raise ValueError(f"unknown loader kind {cfg.kind!r} (choose dali or wds)")
    data = data if data is not None else ShardDataset.open(cfg.shards)
    if cfg.kind == "dali":
        try:
            from pipeline.dali_loader import DaliPairLoader
        except ImportError as exc:  # pragma: no cover - machines without DALI
            raise ImportError(f"DALI is not importable ({exc}); use the fallback: --loader wds") from exc
        return DaliPairLoader(cfg, data)
    from pipeline.wds_loader import WdsPairLoader
    return WdsPairLoader(cfg, data)
