"""Locate the FFmpeg binary, read its version, and tie its processes to ours.

Order: ``VR_FFMPEG`` (or an explicit path), else the binary the ``imageio-ffmpeg`` wheel ships,
else ``ffmpeg`` on PATH.
"""

from __future__ import annotations

import ctypes
import functools
import shutil
import signal
import subprocess
import sys
from typing import Any

_PR_SET_PDEATHSIG = 1


class FFmpegNotFound(Exception):
    pass


def find_ffmpeg(explicit: str | None = None) -> str:
    if explicit:
        found = shutil.which(explicit)
        if not found:
            raise FFmpegNotFound(f"VR_FFMPEG={explicit!r} is not an executable")
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # the wheel may lack a binary for this platform
        pass
    found = shutil.which("ffmpeg")
    if not found:
        raise FFmpegNotFound("no FFmpeg found: set VR_FFMPEG or install imageio-ffmpeg")
    return found


@functools.lru_cache(maxsize=8)
def ffmpeg_version(binary: str) -> str:
    """The version word FFmpeg prints first, e.g. ``n9.0.2-17-g2a571b6068-20260930``."""
    out = subprocess.run(
        [binary, "-hide_banner", "-version"], capture_output=True, text=True, timeout=20
    ).stdout
    first = out.splitlines()[0] if out else ""
    parts = first.split()
    return parts[2] if len(parts) > 2 and parts[0] == "ffmpeg" else first.strip()


@functools.cache
def _prctl():
    # Looked up once, in the parent: the forked child only makes the call (loading a library
    # after ``fork`` in a threaded process could wait for a lock another thread held).
    return ctypes.CDLL(None, use_errno=True).prctl


def child_options() -> dict[str, Any]:
    """Keyword options for ``subprocess.Popen`` that make an FFmpeg child die with this process
    (Linux; elsewhere none, and start-up recovery still kills recorded leftovers).

    The kernel ties the signal to the *thread* that forked the child: ``pipeline/media/child.py``
    forks from the thread running the event loop, which lives as long as the service.
    """
    if not sys.platform.startswith("linux"):
        return {}
    prctl = _prctl()

    def die_with_parent() -> None:
        """In the forked child, before FFmpeg starts: the kernel sends it SIGKILL when the
        process that started it dies, even by ``kill -9`` (which no clean-up of ours can see).
        Without it a killed server left its FFmpeg writing ``.part`` files for 20 s."""
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    return {"preexec_fn": die_with_parent}
