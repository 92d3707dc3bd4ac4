"""One service per data folder: an exclusive ``flock`` on ``<data>/instance.lock``.

A second ``video-refresher serve`` on the same folder would take the first one's FFmpeg for a
leftover of a crash: its start-up recovery killed them, failed their videos, and re-rendered
them beside the live service. The lock is taken before anything of the folder is read or
changed, and the kernel lets go of it when the process ends, however it ends (``kill -9``
included), so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

LOCK_NAME = "instance.lock"


class DataDirInUse(Exception):
    """Another process holds the data folder."""


class DataDirLock:
    """The held lock (``release`` or process exit lets it go). ``held`` is False on a file
    system without locks (``ENOLCK``, some network shares): the service runs as it did before
    there was a lock, and ``unlocked_because`` says why, for a warning."""

    def __init__(self, data_dir: Path) -> None:
        path = data_dir / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._fd: int | None = fd
        self.held, self.unlocked_because = True, ""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            self.release()
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                self.held, self.unlocked_because = False, exc.strerror or str(exc)
                return
            who = f"(process {holder}) " if holder else ""
            raise DataDirInUse(
                f"another Video Refresher {who}is using the data folder {data_dir}; stop it "
                "first, or give this one a folder of its own (VR_DATA_DIR or --data-dir)"
            ) from None
        try:  # who holds it, for the message above (a full disk only loses that)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor lets go of the flock
            self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
