"""The data folder's lock (``pipeline/state/lock.py``): one service per folder."""

from __future__ import annotations

import errno
import fcntl
import os

import pytest

from pipeline.state.lock import DataDirInUse, DataDirLock


def test_a_second_lock_on_the_folder_is_refused_until_the_first_lets_go(tmp_path):
    first = DataDirLock(tmp_path)
    assert first.held
    with pytest.raises(DataDirInUse, match=f"process {os.getpid()}"):
        DataDirLock(tmp_path)
    first.release()
    again = DataDirLock(tmp_path)
    assert again.held
    again.release()


def test_a_file_system_without_locks_runs_unlocked_as_before(tmp_path, monkeypatch):
    """Some network shares answer ENOLCK: refusing to start there would stop a service that
    ran before the lock existed; it runs, and says it is not locked."""
    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    lock = DataDirLock(tmp_path)
    assert not lock.held and lock.unlocked_because == os.strerror(errno.ENOLCK)
    lock.release()
