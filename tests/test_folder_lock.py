"""siammae_common.folder_lock: one writer per folder, the holder named, the lock gone with its process,
and no locks silently skipped on a file system without them."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from siammae_common import folder_lock as fl
from siammae_common.console import UserError

REPO = Path(__file__).resolve().parents[1]
HOLD = "import sys, time; from siammae_common.folder_lock import folder_lock\n" \
       "with folder_lock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(60)\n"


def hold_in_another_process(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_writer_is_refused_with_the_holders_pid_and_host(tmp_path: Path) -> None:
    holder = hold_in_another_process(tmp_path / "out")
    try:
        with pytest.raises(UserError) as refused, fl.folder_lock(tmp_path / "out"):
            pass
        message = refused.value.format_message()
        assert f"pid {holder.pid} on {socket.gethostname()}" in message and "\n" not in message
        assert "in use by" in message and "--out" in message
        assert fl.writer_of(tmp_path / "out") is not None
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_dies_with_its_process_even_by_sigkill(tmp_path: Path) -> None:
    holder = hold_in_another_process(tmp_path / "out")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert fl.writer_of(tmp_path / "out") is None
    with fl.folder_lock(tmp_path / "out") as lock:           # taken over at once, no stale lock to clean
        assert lock.path.is_file()
    assert not (tmp_path / "out" / fl.LOCK_NAME).exists()


def test_a_folder_the_lock_created_is_removed_when_nothing_was_written(tmp_path: Path) -> None:
    with fl.folder_lock(tmp_path / "new" / "out"):
        assert (tmp_path / "new" / "out").is_dir()
    assert not (tmp_path / "new").exists()
    with fl.folder_lock(tmp_path / "kept") as lock:
        (lock.folder / "result.txt").write_text("x")
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["result.txt"]


def test_a_file_where_the_folder_should_be_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("keep")
    for folder in (tmp_path / "f", tmp_path / "f" / "sub"):
        with pytest.raises(UserError, match="is a file, not a folder"), fl.folder_lock(folder):
            pass
    assert (tmp_path / "f").read_text() == "keep"


def test_a_waiting_writer_gets_the_lock_when_the_holder_ends(tmp_path: Path) -> None:
    holder = hold_in_another_process(tmp_path / "out")
    got: list[bool] = []

    def wait_for_lock() -> None:
        with fl.folder_lock(tmp_path / "out", wait=True):
            got.append(True)

    waiter = threading.Thread(target=wait_for_lock)
    waiter.start()
    waiter.join(timeout=1.0)
    assert not got, "the lock was taken while its holder was alive"
    holder.kill()
    holder.wait()
    waiter.join(timeout=30)
    assert got == [True]


def test_without_locks_on_the_file_system_writing_is_refused_unless_allowed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fl.fcntl, "flock", no_locks)
    monkeypatch.delenv(fl.UNLOCKED_ENV, raising=False)
    with pytest.raises(UserError, match=f"does not support locks.*{fl.UNLOCKED_ENV}=1"), \
            fl.folder_lock(tmp_path / "out"):
        pass
    assert not (tmp_path / "out").exists()
    monkeypatch.setenv(fl.UNLOCKED_ENV, "1")
    with fl.folder_lock(tmp_path / "out") as lock:
        assert not lock.locked
