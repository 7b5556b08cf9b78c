"""One process per run folder: an OS lock (``flock``) on ``<run folder>/.lock``, held for the whole run.

The kernel releases the lock when its holder exits, however it exits (``kill -9`` included), so a
lock is never stale. The file names the holder (pid and host) for the line a second run prints.
Locks are advisory: they keep accessbench runs apart, not other programs.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from bench.errors import UserError

LOCK_FILE = ".lock"


class RunLock:
    """The lock on one run folder: ``with RunLock(run_dir):`` holds it, or raises a UserError naming the holder."""

    def __init__(self, run_dir: Path, wait_seconds: float = 1.0) -> None:
        self.run_dir = run_dir
        self.wait_seconds = wait_seconds  # a crash watcher may hold it for a moment while it records a crash
        self.fd: int | None = None

    def try_take(self) -> bool:
        """Take the lock if it is free; record this process as its holder."""
        fd = os.open(self.run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)
        self.fd = fd
        return True

    def holder(self) -> str:
        try:
            return (self.run_dir / LOCK_FILE).read_text(encoding="utf-8").strip() or "pid unknown"
        except OSError:
            return "pid unknown"

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the last descriptor releases the lock
            self.fd = None

    def __enter__(self) -> RunLock:
        deadline = time.monotonic() + self.wait_seconds
        while not self.try_take():
            if time.monotonic() >= deadline:
                raise UserError(
                    f"{self.run_dir} is in use by another accessbench run ({self.holder()}); wait for it to finish, or give this one another --output folder"
                )
            time.sleep(0.1)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.release()
