"""The one way siammae writes a file that others may read while it is written: into a temp file beside
it, flushed to disk (fsync), then renamed over the target, so a reader sees the old file or the whole
new one, never a part. A failure removes the temp file and leaves the target as it was."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def temp_path_for(path: Path) -> Path:
    """A hidden temp name beside `path`, unique to this process and call: `.NAME.PID.HEX.tmp`."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


class AtomicFile:
    """A binary file written at `temp` and moved onto `path` by commit() (or dropped by discard()).

    The file gets the mode a plain `open` would give it (0666 less the umask), not a temp file's 0600.
    For writers that keep a file open across many calls (the shard tar writer); one-shot writes use
    `atomic_write`.
    """

    def __init__(self, path: str | os.PathLike, temp: str | os.PathLike | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.temp = Path(temp) if temp is not None else temp_path_for(self.path)
        fd = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        self.file: IO[bytes] = os.fdopen(fd, "wb")

    def commit(self) -> None:
        """Flush to disk, rename onto the target, and make the rename durable too."""
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.temp, self.path)
        except BaseException:
            self.discard()
            raise
        _fsync_dir(self.path.parent)

    def discard(self) -> None:
        """Drop the temp file; the target is untouched. Works on a full disk too, where closing the file
        fails again as it flushes what is buffered."""
        try:
            self.file.close()
        except OSError:
            pass
        finally:
            self.temp.unlink(missing_ok=True)


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """`with atomic_write(p) as f: f.write(b"...")`: the whole content appears at `p` when the block
    ends without an error; on an error (or KeyboardInterrupt) nothing changes at `p`."""
    out = AtomicFile(path)
    try:
        yield out.file
    except BaseException:
        out.discard()
        raise
    out.commit()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_write(path) as f:
        f.write(text.encode())


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (a crash right after it keeps the new file); skipped where unsupported."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
