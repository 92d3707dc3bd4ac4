"""Tiny generated media for tests: real clips from FFmpeg's ``lavfi`` sources, and broken files.

Plain synchronous functions (``subprocess`` with argument lists, never a shell); each writes
into the directory it is given and returns the new file's path.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from pipeline.media.ffmpeg import find_ffmpeg


def _run(args: list[str]) -> None:
    done = subprocess.run(
        [find_ffmpeg(), "-hide_banner", "-nostdin", "-y", "-loglevel", "error", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


def make_clip(
    directory: Path | str,
    name: str = "a.mp4",
    *,
    seconds: float = 1.0,
    size: str = "160x120",
    fps: int = 15,
    audio: bool = True,
    rotation: int | None = None,
    pattern: str = "testsrc2",
    audio_gaps: tuple[tuple[float, float], ...] = (),
) -> Path:
    """An H.264 (+ AAC when ``audio``) clip of a moving test pattern and a tone.

    ``pattern`` is an FFmpeg lavfi video source name (``testsrc2``, ``smptebars``…) or
    ``color=<name>`` for a flat picture, e.g. ``color=white``.

    ``size`` is the coded size. ``rotation`` (degrees, e.g. 90) adds a display-rotation flag
    the way phones do, so the clip *displays* with width and height swapped for 90/270.
    The container follows the name's suffix (``.mp4``, ``.mov``). ``audio_gaps`` (start, end in
    seconds) are holes in the sound, as damaged packets leave them: no samples there, and the
    timestamps after a hole carry on from where the sound would have been.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / name
    plain = out if rotation is None else directory / f".plain-{name}"
    video = f"{pattern}:" if pattern.startswith("color=") else f"{pattern}="
    args = ["-f", "lavfi", "-i", f"{video}size={size}:rate={fps}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}"]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", str(fps)]
    if audio and audio_gaps:
        holes = "+".join(f"between(t\\,{a}\\,{b})" for a, b in audio_gaps)
        args += ["-af", f"aselect='not({holes})'"]
    if audio:
        args += ["-c:a", "aac", "-b:a", "64k"]
    args += ["-metadata", "title=test clip", "-metadata", "comment=from tests/clips.py"]
    _run([*args, "file:" + str(plain)])
    if rotation is not None:
        # A remux that only adds the display matrix, as a phone's camera app writes it.
        _run([
            "-display_rotation", str(rotation), "-i", "file:" + str(plain),
            "-c", "copy", "-metadata", "title=rotated test clip", "file:" + str(out),
        ])
        plain.unlink()
    return out


def make_corrupt_clip(
    directory: Path | str, name: str = "corrupt.mp4", *, keep_header: bool = False
) -> Path:
    """A real MP4 cut short.

    By default the index (``moov``) is at the end and is cut off, so nothing can open the file.
    With ``keep_header`` the index is at the front and intact but the media data stops at 60 %:
    the file probes as a video, and decoding it runs out of data.
    """
    directory = Path(directory)
    whole = make_clip(directory, f".whole-{name}", seconds=2.0, audio=True)
    if keep_header:
        front = directory / f".front-{name}"
        _run(["-i", "file:" + str(whole), "-c", "copy", "-movflags", "+faststart",
              "file:" + str(front)])
        whole.unlink()
        whole = front
    data = whole.read_bytes()
    whole.unlink()
    out = directory / name
    out.write_bytes(data[: len(data) * 3 // 5] if keep_header else data[: len(data) // 3])
    return out


def make_text_file_as_mp4(directory: Path | str, name: str = "notes.mp4") -> Path:
    """A plain text file with a video's name."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / name
    out.write_text("These are meeting notes, not a video.\n" * 20, encoding="utf-8")
    return out


def make_encoded_clip(
    directory: Path | str,
    name: str,
    video: list[str],
    audio: list[str] | None = None,
    *,
    seconds: float = 1.0,
    size: str = "160x120",
    fps: int = 15,
) -> Path:
    """A test-pattern clip with the given encoder arguments, e.g. ``["-c:v", "libvpx-vp9"]``.

    For the formats beyond :func:`make_clip`'s H.264: ``audio`` (e.g. ``["-c:a", "ac3"]``) adds
    a tone; the container follows the name's suffix (``.webm``, ``.mkv``, ``.avi``, ``.mpg``…).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / name
    args = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds}"]
    if audio is not None:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
    _run([*args, *video, *(audio or []), "-g", str(fps), "file:" + str(out)])
    return out


def make_damaged_clip(directory: Path | str, name: str = "damaged.mp4", *,
                      intact: float = 0.4) -> Path:
    """A real MP4 of full length whose media data is zeroed after its first ``intact`` part.

    Its index is intact and lists every frame, so it probes as a complete video and is
    accepted; its pictures stop decoding part-way, so its render fails verification (or, with
    more than 2/3 of them broken, ``intact`` 0.2, FFmpeg gives up on the source).
    """
    directory = Path(directory)
    whole = make_clip(directory, f".whole-{name}", seconds=2.0, audio=True)
    front = directory / f".front-{name}"
    _run(["-i", "file:" + str(whole), "-c", "copy", "-movflags", "+faststart", "file:" + str(front)])
    whole.unlink()
    data = bytearray(front.read_bytes())
    front.unlink()
    offset = data.index(b"mdat") - 4
    size = int.from_bytes(data[offset:offset + 4], "big")
    start = offset + 8 + int(size * intact)
    data[start:offset + size] = bytes(offset + size - start)
    out = directory / name
    out.write_bytes(bytes(data))
    return out
