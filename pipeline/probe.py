"""Probe media files with PyAV (the bundled FFmpeg has no ffprobe).

Error handling: anything PyAV cannot open as a media file with a video stream raises
``NotAVideo`` with a short human reason; callers turn that into a 415.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av


class NotAVideo(Exception):
    """The file is not a video we can process."""


@dataclass(frozen=True)
class MediaInfo:
    """What the pipeline needs to know about one source or output file."""

    duration: float
    width: int  # coded size, as stored in the stream
    height: int
    rotation: int  # display rotation in degrees, one of 0, 90, 180, 270
    fps: float
    has_audio: bool
    video_codec: str
    audio_codec: str | None
    format_name: str
    size: int

    @property
    def display_width(self) -> int:
        return self.height if self.rotation in (90, 270) else self.width

    @property
    def display_height(self) -> int:
        return self.width if self.rotation in (90, 270) else self.height


def probe(path: Path | str) -> MediaInfo:
    """Open ``path`` and describe it.

    Raises ``NotAVideo`` if it is not a readable container with at least one video stream
    whose first frame decodes.
    """
    path = Path(path)
    try:
        container = av.open(str(path), mode="r")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise NotAVideo(f"not a readable video file ({_short(exc)})") from None
    try:
        vstreams = [s for s in container.streams if s.type == "video"]
        if not vstreams:
            raise NotAVideo("the file has no video stream")
        v = vstreams[0]
        if v.codec_context is None or not v.codec_context.width:
            raise NotAVideo("the video stream has no picture size")
        astreams = [s for s in container.streams if s.type == "audio"]
        duration = _duration(container, v)
        if not duration or duration <= 0 or not math.isfinite(duration):
            raise NotAVideo("the video has no duration")
        fps = float(v.average_rate or v.guessed_rate or Fraction(30))
        info = MediaInfo(
            duration=duration,
            width=int(v.codec_context.width),
            height=int(v.codec_context.height),
            rotation=0,
            fps=fps,
            has_audio=bool(astreams),
            video_codec=v.codec_context.name,
            audio_codec=astreams[0].codec_context.name if astreams else None,
            format_name=container.format.name,
            size=path.stat().st_size,
        )
        # Decoding the first frame proves the stream is really a video and gives its rotation.
        rotation = _first_frame_rotation(container, v)
        return MediaInfo(**{**info.__dict__, "rotation": rotation})
    finally:
        container.close()


def _duration(container: av.container.InputContainer, v: av.video.stream.VideoStream) -> float:
    if v.duration is not None and v.time_base is not None:
        d = float(v.duration * v.time_base)
        if d > 0:
            return d
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def _first_frame_rotation(
    container: av.container.InputContainer, v: av.video.stream.VideoStream
) -> int:
    try:
        for frame in container.decode(v):
            angle = float(getattr(frame, "rotation", 0) or 0)
            return int(round(angle / 90.0)) * 90 % 360
    except av.error.FFmpegError as exc:
        raise NotAVideo(f"the video stream does not decode ({_short(exc)})") from None
    raise NotAVideo("the video stream has no frames")


def _short(exc: BaseException) -> str:
    # FFmpeg errors name the file; the message is shown to users, so keep only the reason.
    text = (getattr(exc, "strerror", None) or str(exc)).strip() or type(exc).__name__
    return text.splitlines()[0][:200]
