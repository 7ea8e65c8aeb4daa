"""One writer per folder: a process that writes into a folder (make_shards --out, siammae-train --out,
siammae-eval --out, siammae-ablate --out) holds an exclusive lock on a file inside it for as long as it
runs. A second writer is refused with one line naming the holder (PID, host, command); a reader can ask
whether a writer is at work.

The lock is `flock` on `FOLDER/.siammae.lock` (or another name, e.g. one per `--part`): the kernel drops
it when the holder exits, however it exits (kill -9 included), so a crashed run never leaves a folder
locked. On NFS, Linux (2.6.12 and later) implements flock with the server's byte-range locks, so writers
on different machines see each other; a lock of a machine that died is freed when the server ends its
lease (NFSv4: about 90 s by default). A file system without lock support (Lustre mounted without
`-o flock`, some FUSE file systems) makes flock fail: the writer is then refused with a message, unless
SIAMMAE_UNLOCKED=1 is set, which writes without a lock (with a warning) for the user who makes sure that
only one process writes there. (NFS mounted with `nolock` keeps locks on one machine only: writers on
two machines are not stopped there.)
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from siammae_common.console import UserError, warn

LOCK_NAME = ".siammae.lock"
UNLOCKED_ENV = "SIAMMAE_UNLOCKED"         # "1": write where the file system has no locks (after a warning)
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def _holder_text(fd: int) -> str:
    """'make_shards.py … (pid 123 on node-7, since 12:03:44)' from a lock file's content."""
    try:
        info = json.loads(os.pread(fd, 65536, 0).decode() or "{}")
        command = str(info["command"])
        command = command if len(command) <= 100 else command[:97] + "..."
        return f"{command} (pid {info['pid']} on {info['host']}, since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (it is starting)"


def _open_lock_file(path: Path, what: str, folder: Path) -> tuple[int, bool]:
    """(descriptor, whether this call created the file)."""
    try:
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644), True
        except FileExistsError:
            return os.open(path, os.O_RDWR | os.O_CLOEXEC), False
    except FileNotFoundError:                 # removed in between by its holder: try again
        return _open_lock_file(path, what, folder)
    except OSError as e:
        raise UserError(f"{what} {folder}: output folder is not writable ({e.strerror})") from None


def _lock(fd: int, path: Path, what: str, folder: Path, wait: bool, created: bool) -> bool:
    """True when `fd` now holds the lock; False where the file system has none and the user allows it.
    `created`: the caller made the lock file (removed again when writing is refused for want of locks)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        return True
    except BlockingIOError:
        holder = _holder_text(fd)
        os.close(fd)
        raise UserError(f"{what} {folder}: in use by {holder}; wait until it ends, or use another {what}") from None
    except OSError as e:
        if e.errno not in _NO_LOCKS:
            os.close(fd)
            raise
        if os.environ.get(UNLOCKED_ENV) != "1":
            os.close(fd)
            if created:
                path.unlink(missing_ok=True)
            raise UserError(f"{what} {folder}: the file system does not support locks ({e.strerror}), so no "
                            f"other writer can be kept out; set {UNLOCKED_ENV}=1 to write there anyway, making sure "
                            "only one process writes into it") from None
        warn(f"{path}: no lock ({e.strerror}); writing unlocked because {UNLOCKED_ENV}=1")
        return False


class FolderLock:
    """An exclusive lock on `folder`, held until release() (or until the process ends)."""

    def __init__(self, folder: Path, name: str = LOCK_NAME, what: str = "--out", wait: bool = False) -> None:
        self.folder, self.path = Path(folder), Path(folder) / name
        if self.folder.exists() and not self.folder.is_dir():
            raise UserError(f"{what} {folder}: is a file, not a folder")
        missing = [p for p in (self.folder.absolute(), *self.folder.absolute().parents) if not p.exists()]
        self.created = missing[::-1]          # the folders this lock makes, outermost first
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            above = next(p for p in self.folder.absolute().parents if p.exists())
            problem = f"{above} is a file, not a folder" if not above.is_dir() else e.strerror
            raise UserError(f"{what} {folder}: cannot create the output folder ({problem})") from None
        try:
            self.fd, self.locked = self._acquire(what, wait)
        except BaseException:
            self._remove_created_folder()
            raise
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                  "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, json.dumps(record).encode(), 0)

    def _acquire(self, what: str, wait: bool) -> tuple[int, bool]:
        while True:                           # the holder may remove the file as it releases: lock the file that is there
            fd, created = _open_lock_file(self.path, what, self.folder)
            if not _lock(fd, self.path, what, self.folder, wait, created):
                return fd, False
            try:
                if os.path.samestat(os.fstat(fd), os.stat(self.path)):
                    return fd, True
            except FileNotFoundError:
                pass
            os.close(fd)

    def release(self) -> None:
        """Drop the lock (and its file); the folders this lock created are removed again if they stayed empty."""
        if self.fd < 0:
            return
        self.path.unlink(missing_ok=True)
        os.close(self.fd)
        self.fd = -1
        self._remove_created_folder()

    def _remove_created_folder(self) -> None:
        for folder in reversed(self.created):
            try:
                folder.rmdir()
            except OSError:                   # not empty: the run wrote something, keep it
                return


@contextmanager
def folder_lock(folder: str | os.PathLike, name: str = LOCK_NAME, what: str = "--out",
                wait: bool = False) -> Iterator[FolderLock]:
    """`with folder_lock(out):` write into `out` as its only writer. Creates the folder (and removes it
    again if nothing was written). Raises UserError (one line) when another process holds the lock
    (at once; with wait=True it waits), when `folder` is a file or not writable, or when the file
    system has no locks (see the module docstring)."""
    lock = FolderLock(Path(folder), name, what, wait)
    try:
        yield lock
    finally:
        lock.release()


def writer_of(folder: str | os.PathLike, name: str = LOCK_NAME) -> str | None:
    """Who holds `folder`'s lock ('make_shards.py … (pid …)'), or None when no writer is at work."""
    path = Path(folder) / name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    except BlockingIOError:
        return _holder_text(fd)
    except OSError:                           # no locks on this file system: nothing to learn
        return None
    finally:
        os.close(fd)
