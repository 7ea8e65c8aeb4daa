"""Where a loader's next pass starts (epoch and batch), shared by the DALI loader and the fallback."""

from __future__ import annotations


class EpochPosition:
    """Epochs of `_batches` batches (the loader sets it before its first pass); set_epoch chooses
    the epoch and the batch that the next pass starts at, and each pass ends with the epoch."""

    _batches: int
    epoch: int = 0
    _start: int = 0                          # batch of the epoch the next pass starts at

    def __len__(self) -> int:
        return self._batches

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """The next pass delivers batches start_batch, ..., len(self) - 1 of `epoch`."""
        if not 0 <= start_batch < self._batches:
            raise ValueError(f"start_batch {start_batch} is outside the epoch's {self._batches} batches")
        self.epoch, self._start = epoch, start_batch

    def _pass_batches(self) -> range:
        """Global batch numbers of the pass about to run; a later pass starts at its epoch's batch 0."""
        first = self.epoch * self._batches
        start, self._start = first + self._start, 0
        return range(start, first + self._batches)
