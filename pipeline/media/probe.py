"""Probe media files with PyAV (the bundled FFmpeg has no ffprobe).

The video stream is demuxed to its end (packets only, nothing decoded past the first frame):
that gives its true span, first frame to the end of the last, which the container's duration
does not for variable-frame-rate footage (a phone clip whose rate drops in low light said
2.90 s where its frames lasted 3.00 s), and it finds files cut off before their index ends.

Error handling: anything PyAV cannot open as a media file with a video stream raises
``NotAVideo`` with a short human reason (callers answer 415); a video that is one but cannot
be rendered (cut off, too short) raises ``Unrenderable`` (callers answer 422).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

# Fewer frames than this, or a shorter picture, cannot make a variation: speed, pan and the
# distinctness frames need some motion to work on (a single frame made FFmpeg write nothing).
MIN_FRAMES = 3
MIN_DURATION = 0.1


# Called with every packet `probe` reads (``describe``'s ``on_packet``); what it raises ends the
# read and reaches the caller (FFmpeg's errors from inside it too). It returns the frames it
# decoded from the packet, if any: the first video frame among them gives the rotation.
PacketHook = Callable[[av.Packet], Sequence[av.frame.Frame] | None]


class NotAVideo(Exception):
    """The file is not a video we can process."""


class Unrenderable(NotAVideo):
    """The file is a video, but not one that can be rendered; ``code`` says why
    (``incomplete_video``, ``video_too_short``)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


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
    frames: int = 0  # video frames in the file (packets demuxed); 0 where not counted
    # Seconds on the file's clock where the picture starts, and where the first audio stream
    # starts and ends (None where the packets carry no time, or there is no audio).
    video_start: float | None = None
    audio_start: float | None = None
    audio_end: float | None = None
    # The picture's sample (pixel) aspect ratio as stored: width of a pixel over its height
    # (1.0 for square pixels and where the stream does not say; 4/3 for anamorphic 4:3 DV).
    sar: float = 1.0

    def to_dict(self) -> dict:
        """Plain JSON-able fields, as the store keeps the probe intake made (``from_dict``)."""
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict) -> MediaInfo | None:
        """The `MediaInfo` that ``to_dict`` wrote, or None for anything else (rows stored by an
        earlier version, which kept another shape: probe the file again then)."""
        try:
            return cls(**data)
        except TypeError:
            return None

    @property
    def display_width(self) -> int:
        return self.height if self.rotation in (90, 270) else self.width

    @property
    def display_height(self) -> int:
        return self.width if self.rotation in (90, 270) else self.height

    @property
    def display_sar(self) -> float:
        """The pixel aspect ratio the way the picture is shown (upright)."""
        return 1.0 / self.sar if self.rotation in (90, 270) and self.sar else self.sar


def probe_source(path: Path | str) -> MediaInfo:
    """`probe` a video to render. Also raises ``Unrenderable`` when it is cut off or too short."""
    return probe(path, renderable=True)


def probe(path: Path | str, *, renderable: bool = False) -> MediaInfo:
    """Open ``path`` and describe it.

    Raises ``NotAVideo`` if it is not a readable container with at least one video stream
    whose first frame decodes; with ``renderable``, ``Unrenderable`` if it is cut off or too
    short to render.
    """
    path = Path(path)
    try:
        container = av.open(str(path), mode="r")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise NotAVideo(f"not a readable video file ({_short(exc)})") from None
    try:
        return describe(container, path, renderable=renderable)
    finally:
        container.close()


def describe(container: av.container.InputContainer, path: Path, *, renderable: bool = False,
             on_packet: PacketHook | None = None) -> MediaInfo:
    """`probe` of an open ``container`` (of the file at ``path``).

    With ``on_packet``, every packet of the streams it reads (the first video and the first
    audio stream) is handed to it before it is counted, in file order; then FFmpeg's errors
    (the demuxer's, or the decoder's inside the hook) are raised as they are instead of ending
    the read quietly or becoming ``NotAVideo``, so that a caller checking the packets sees them.
    The rotation is then read off the first video frame the hook decodes, not off a decode of
    its own: the same frame is not decoded twice (a third of a verification's CPU time).
    """
    vstreams = [s for s in container.streams if s.type == "video"]
    if not vstreams:
        raise NotAVideo("the file has no video stream")
    v = vstreams[0]
    if _is_still_image(container.format.name):
        raise NotAVideo(f"it is a still image ({v.codec_context.name}), not a video")
    if v.codec_context is None or not v.codec_context.width:
        raise NotAVideo("the video stream has no picture size")
    astreams = [s for s in container.streams if s.type == "audio"]
    indexed = int(v.frames or 0)
    # What the stream's own header says it lasts (None where it does not say).
    declared = float(v.duration * v.time_base) if v.duration and v.time_base else None
    # Decoding the first frame proves the stream is really a video and gives its rotation;
    # ``on_packet`` decodes it on the way through the packets instead.
    first: list[av.frame.Frame] = []
    if on_packet is None:
        rotation = _first_frame_rotation(container, v)
        spans = _demux_spans(container, v, astreams[0] if astreams else None)
    else:
        spans = _demux_spans(container, v, astreams[0] if astreams else None,
                             on_packet=_keep_first_frame(on_packet, v, first))
        if not first:
            raise NotAVideo("the video stream has no frames")
        rotation = _rotation(first[0])
    video, audio = spans[0], spans[1] if astreams else _Span()
    frames, span = video.frames, video.seconds
    duration = span or _duration(container, v)
    if not duration or duration <= 0 or not math.isfinite(duration):
        raise NotAVideo("the video has no duration")
    fps = float(v.average_rate or v.guessed_rate or Fraction(30))
    if renderable:
        _check_renderable(frames, indexed, duration, declared, fps)
    return MediaInfo(
        duration=duration,
        width=int(v.codec_context.width),
        height=int(v.codec_context.height),
        rotation=rotation,
        fps=fps,
        has_audio=bool(astreams),
        video_codec=v.codec_context.name,
        audio_codec=astreams[0].codec_context.name if astreams else None,
        format_name=container.format.name,
        size=path.stat().st_size,
        frames=frames,
        video_start=video.start,
        audio_start=audio.start,
        audio_end=audio.end,
        sar=_sar(v),
    )


def _sar(stream) -> float:
    """The stream's sample aspect ratio; 1.0 where it is unknown or nonsensical."""
    ratio = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
    try:
        value = float(ratio) if ratio else 1.0
    except (TypeError, ZeroDivisionError):
        return 1.0
    return value if 0.1 <= value <= 10 else 1.0


@dataclass
class _Span:
    """What the packets of one stream cover."""

    frames: int = 0
    start: float | None = None  # seconds: the first packet's time
    end: float | None = None  # seconds: the end of the last packet in presentation order

    @property
    def seconds(self) -> float:
        return self.end - self.start if self.start is not None and self.end is not None else 0.0


def _demux_spans(container: av.container.InputContainer, *streams,
                 on_packet: PacketHook | None = None) -> list[_Span]:
    """A `_Span` for each stream (``None`` entries get an empty one), read off its packets:
    the container's durations are estimates for MPEG program streams and wrong for
    variable-frame-rate MP4s. ``on_packet``: see `describe`."""
    wanted = [s for s in streams if s is not None]
    try:
        container.seek(0)
    except av.error.FFmpegError:
        pass  # not seekable: the first frame decoded above is the only one missed
    frames = {s.index: 0 for s in wanted}
    ends: dict[int, dict[int, int]] = {s.index: {} for s in wanted}  # pts -> end, per stream
    try:
        for packet in container.demux(*wanted):
            if on_packet is not None:
                on_packet(packet)
            index = packet.stream.index
            pts = packet.pts if packet.pts is not None else packet.dts
            if packet.size == 0:
                # The demuxer's flush packet at the end (no time), or a dropped frame of a
                # variable-rate AVI (it shows the frame before): indexed, so counted.
                frames[index] += pts is not None
                continue
            frames[index] += 1
            if pts is not None:
                ends[index][pts] = pts + (packet.duration or 0)
    except av.error.FFmpegError:
        if on_packet is not None:
            raise
        # Damaged data: what was read counts, the render's decode judges the rest.
    return [_span(s, frames[s.index], ends[s.index]) if s is not None else _Span()
            for s in streams]


def _span(stream, frames: int, ends: dict[int, int]) -> _Span:
    """The stream starts where its header says (that accounts for edit lists, e.g. the AAC
    encoder's priming samples before 0) and ends with its last packet."""
    if not ends or stream.time_base is None:
        return _Span(frames)
    order = sorted(ends)
    end = ends[order[-1]]
    if end == order[-1] and len(order) > 1:  # no packet duration: the last step between frames
        end += order[-1] - order[-2]
    start = stream.start_time if stream.start_time is not None else order[0]
    return _Span(frames, float(start * stream.time_base), float(end * stream.time_base))


def _check_renderable(frames: int, indexed: int, duration: float, declared: float | None,
                      fps: float) -> None:
    """Refuse a file cut off before its index ends (fewer frames and less time in it than the
    index lists: AVI indexes dropped frames too, so frames alone do not tell) and a video too
    short to vary."""
    if indexed and declared and frames < indexed and declared - duration > 0.5 / fps:
        raise Unrenderable(
            "incomplete_video",
            f"the file is incomplete: it holds {frames} of its {indexed} video frames "
            f"({duration:.1f} s of {declared:.1f} s). Was the upload or the export cut off? "
            "Export or copy the video again."
        )
    if frames and frames < MIN_FRAMES or duration < MIN_DURATION:
        raise Unrenderable(
            "video_too_short",
            f"the video is too short ({_frames_text(frames)}, {duration:.2f} s): a variation "
            f"needs at least {MIN_FRAMES} frames and {MIN_DURATION:.1f} s of picture"
        )


def _is_still_image(format_name: str) -> bool:
    # FFmpeg reads single pictures through its image demuxers: "image2", "png_pipe", …
    return any(name == "image2" or name.endswith("_pipe") for name in format_name.split(","))


def _frames_text(n: int) -> str:
    return "1 frame" if n == 1 else f"{n} frames"


def _duration(container: av.container.InputContainer, v: av.video.stream.VideoStream) -> float:
    if v.duration is not None and v.time_base is not None:
        d = float(v.duration * v.time_base)
        if d > 0:
            return d
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def _first_frame_rotation(container: av.container.InputContainer,
                          v: av.video.stream.VideoStream) -> int:
    try:
        for frame in container.decode(v):
            return _rotation(frame)
    except av.error.FFmpegError as exc:
        raise NotAVideo(f"the video stream does not decode ({_short(exc)})") from None
    raise NotAVideo("the video stream has no frames")


def _rotation(frame: av.frame.Frame) -> int:
    angle = float(getattr(frame, "rotation", 0) or 0)
    return int(round(angle / 90.0)) * 90 % 360


def _keep_first_frame(hook: PacketHook, v: av.video.stream.VideoStream,
                      first: list[av.frame.Frame]) -> PacketHook:
    """``hook``, keeping the first frame it decodes from ``v`` in ``first``."""

    def keeping(packet: av.Packet) -> Sequence[av.frame.Frame] | None:
        frames = hook(packet)
        if frames and not first and packet.stream is v:
            first.append(frames[0])
        return frames

    return keeping


def _short(exc: BaseException) -> str:
    # FFmpeg errors name the file; the message is shown to users, so keep only the reason.
    text = (getattr(exc, "strerror", None) or str(exc)).strip() or type(exc).__name__
    return text.splitlines()[0][:200]
