"""Locate the FFmpeg binary and read its version.

Order: ``VR_FFMPEG`` (or an explicit path), else the binary the ``imageio-ffmpeg`` wheel ships,
else ``ffmpeg`` on PATH.
"""

from __future__ import annotations

import functools
import shutil
import subprocess


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
