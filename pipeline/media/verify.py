"""Verification of one rendered variation before it is committed.

A variation is only delivered when it

- is laid out for streaming: the top-level MP4 boxes cover the file exactly (a cut-off file
  fails here, before anything is decoded) and ``moov`` comes before ``mdat`` (``+faststart``);
- has every packet, in order, and decodes without a single decoder or demuxer error
  (``packets.scan``; with ``VR_VERIFY=full`` every frame, one FFmpeg ``-v error`` run whose
  stderr must stay empty);
- lasts the source's duration divided by its speed factor (±2 %, at least ± half a frame);
- keeps its audio when the source had audio, in sync with the picture within one frame;
- carries no metadata of the source (see `_allowed_tag` for what FFmpeg itself may write);
- has the source's display size (rounded down to even numbers, as the filters do) and is upright
  (no display-rotation flag).

``check_file`` does the cheap checks (layout and container, milliseconds); ``decode`` is the full
decode, run when ``VR_VERIFY=full`` (by default ``packets.scan`` reads every packet and decodes
only keyframes and audio). The distinctness measure's frames do not come from here: the render
taps them (``distinct.Taps``).

Error handling: every failed check raises ``VerificationFailed`` with a sentence naming what is
wrong; the runner turns it into a failed video.

Resource handling: ``decode`` owns its FFmpeg process through ``child.run_child``, which
terminates, kills and always waits for it when the caller is cancelled, and ties it to the
service's life.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import av

from pipeline.media.child import run_child
from pipeline.media.probe import MediaInfo, NotAVideo, describe

DURATION_TOLERANCE = 0.02
# FFmpeg's frame rate guess when a stream does not say; only used for the sync tolerance.
FALLBACK_FPS = 30.0
# AAC codes audio in frames of 1024 samples, so an audio track ends on a frame boundary and may
# run up to one such frame past the picture without being out of sync.
AAC_FRAME_SAMPLES = 1024
# Bytes of FFmpeg's stderr kept in a failure message.
STDERR_KEEP = 400

# Tags the MP4 muxer writes on its own. They describe the file format, never the source.
_FORMAT_TAGS = frozenset({"major_brand", "minor_version", "compatible_brands"})
# FFmpeg's default handler names and vendor id; a source's own handler name (a phone writes
# e.g. "Core Media Video") surviving would be source metadata, so only these values pass.
_DEFAULT_HANDLERS = frozenset({"VideoHandler", "SoundHandler"})
_DEFAULT_VENDOR = "[0][0][0][0]"


class VerificationFailed(Exception):
    """A rendered output is not fit to deliver; ``message`` says why, for the user."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Reference:
    """What an output is checked against: facts about its source, read once per video."""

    display_width: int
    display_height: int
    has_audio: bool
    # "format:title", "video:handler_name", … → value, as PyAV reads them from the source.
    tags: dict[str, str] = field(default_factory=dict)
    # Seconds the source's audio starts and ends after its picture (negative: before); an output
    # keeps these offsets scaled by its speed factor. None where the source does not say.
    audio_lead: float | None = None
    audio_tail: float | None = None


@dataclass(frozen=True)
class Checked:
    """The outcome of ``check_file``: the output's description, for the runner's records."""

    info: MediaInfo
    fps: float


@dataclass(frozen=True)
class StreamFacts:
    """An opened file's tags and rates, and where its streams start and end (`stream_facts`)."""

    tags: dict[str, str]
    fps: float
    video_start: float | None
    video_end: float | None
    audio_start: float | None
    audio_end: float | None
    audio_rate: int | None


# How `check_file` reads a file, once: its probe and its streams' facts. `read_facts` by
# default; ``packets.scan_facts`` also checks every packet and decodes keyframes and audio on
# the same pass.
Reader = Callable[[Path, str], tuple[MediaInfo, StreamFacts]]


def reference_for(path: Path | str, info: MediaInfo) -> Reference:
    """Read the source's tags and stream ends. Blocking (run it in a worker thread)."""
    path = Path(path)
    with open_checked(path, path.name) as container:
        facts = stream_facts(container, info)
    return Reference(
        display_width=info.display_width,
        display_height=info.display_height,
        has_audio=info.has_audio,
        tags=facts.tags,
        audio_lead=_offset(facts.audio_start, facts.video_start),
        audio_tail=_offset(facts.audio_end, facts.video_end),
    )


def check_file(path: Path | str, reference: Reference, expected_duration: float,
               speed: float = 1.0, *, name: str | None = None,
               read: Reader | None = None) -> Checked:
    """The layout and container checks (no full decode). Blocking, milliseconds.

    ``name`` is how messages call the file (default: its file name); ``read`` how the file is
    read after its layout was checked (`Reader`). Raises ``VerificationFailed``.
    """
    path = Path(path)
    name = name or path.name
    check_layout(path, name=name)
    info, facts = (read or read_facts)(path, name)
    fps = facts.fps or FALLBACK_FPS
    # Durations come in whole frames: on a clip of a few frames, half a frame is more than 2 %.
    if abs(info.duration - expected_duration) > max(DURATION_TOLERANCE * expected_duration,
                                                    0.5 / fps):
        message = f"{name} lasts {info.duration:.2f}s, expected {expected_duration:.2f}s"
        if info.duration < expected_duration:
            # The render writes every frame it decodes: a short output means the source's
            # pictures stopped decoding (the probe found them all in the file).
            message += (f": the source's pictures stop decoding after about "
                        f"{info.duration * speed:.1f} s, so the file is probably damaged there")
        raise VerificationFailed(message)
    want_w, want_h = _even(reference.display_width), _even(reference.display_height)
    if info.rotation:
        raise VerificationFailed(
            f"{name} carries a {info.rotation}° display rotation; outputs must be upright"
        )
    if (info.display_width, info.display_height) != (want_w, want_h):
        raise VerificationFailed(
            f"{name} displays as {info.display_width}x{info.display_height}, "
            f"the source as {want_w}x{want_h}"
        )
    if reference.has_audio:
        if not info.has_audio or facts.audio_start is None:
            raise VerificationFailed(f"{name} lost its audio stream")
        _check_sync(name, facts, reference, speed, fps)
    _check_tags(name, facts.tags, reference.tags)
    return Checked(info=info, fps=fps)


def check_layout(path: Path | str, *, name: str | None = None) -> None:
    """The top-level MP4 boxes cover the file exactly and ``moov`` precedes ``mdat``.

    A file cut short ends inside a box (its declared size runs past the end), so truncation is
    caught here without decoding anything.
    """
    path = Path(path)
    name = name or path.name
    boxes = top_level_boxes(path, name=name)
    kinds = [kind for kind, _, _ in boxes]
    if not kinds or kinds[0] != "ftyp":
        raise VerificationFailed(f"{name} is not an MP4 file (it does not start with 'ftyp')")
    if "moov" not in kinds:
        raise VerificationFailed(f"{name} has no index ('moov' box)")
    if "mdat" not in kinds:
        raise VerificationFailed(f"{name} has no media data ('mdat' box)")
    if kinds.index("moov") > kinds.index("mdat"):
        raise VerificationFailed(
            f"{name} is not optimised for streaming: its index ('moov') comes after the media "
            "data, so players must download the whole file before playing"
        )


def top_level_boxes(path: Path | str, *, name: str | None = None) -> list[tuple[str, int, int]]:
    """``(type, offset, size)`` of each top-level box. Raises ``VerificationFailed`` when the
    boxes do not tile the file (cut short, or not an ISO BMFF file at all)."""
    path = Path(path)
    name = name or path.name
    try:
        total = os.path.getsize(path)
    except FileNotFoundError:
        raise VerificationFailed(f"{name} was not written") from None
    if total == 0:
        raise VerificationFailed(f"{name} is empty")
    boxes: list[tuple[str, int, int]] = []
    with open(path, "rb") as fh:
        offset = 0
        while offset < total:
            fh.seek(offset)
            header = fh.read(8)
            if len(header) < 8:
                raise VerificationFailed(f"{name} is truncated (ends inside a box header)")
            size, raw_kind = struct.unpack(">I4s", header)
            kind = raw_kind.decode("latin-1")
            head = 8
            if size == 1:  # 64-bit size follows the type
                large = fh.read(8)
                if len(large) < 8:
                    raise VerificationFailed(f"{name} is truncated (ends inside a box header)")
                size = struct.unpack(">Q", large)[0]
                head = 16
            elif size == 0:  # the box runs to the end of the file
                size = total - offset
            if size < head or not raw_kind.isascii():
                raise VerificationFailed(f"{name} has a damaged box at byte {offset}")
            if offset + size > total:
                raise VerificationFailed(
                    f"{name} is truncated: its '{kind}' box needs {offset + size - total} more bytes"
                )
            boxes.append((kind, offset, size))
            offset += size
    return boxes


def decode_command(ffmpeg: str, path: Path | str, tap: Sequence[str] = (), *,
                   has_audio: bool) -> list[str]:
    """The FFmpeg argument list that decodes every packet of ``path`` and discards the result.

    Audio, when ``has_audio``, goes to the ``null`` muxer. Video goes to ``tap`` (extra output
    arguments that write to stdout, e.g. ``-map 0:v:0 -vf <distinct.tap_filter> <tap_output>``)
    when given, else to ``null`` as well; a tap's filters see every decoded frame, so the video
    is still decoded in full. The service passes no tap (the render taps the frames it
    measures).

    The audio output exists only when the file has audio: an output whose one ``-map 0:a?``
    matches nothing is not left empty by FFmpeg but auto-mapped to the video, re-timed to the
    null encoder's default 1/fps clock, where two speed-scaled frames can round to the same
    tick and FFmpeg logs a false "non monotonically increasing dts" error (silent sources
    failed their verification about half of the time). The video output itself passes frames
    through on the input's own clock (``-fps_mode passthrough -enc_time_base:v demux``) for
    the same reason.
    The decoder runs on one thread: the verification runs one decode per core side by side,
    which wastes less than FFmpeg's frame threads (0.46 against 0.58 CPU seconds for a 5 s
    1080p output).
    """
    args = [
        ffmpeg, "-hide_banner", "-nostdin", "-v", "error",
        "-threads", "1",
        "-i", "file:" + os.fspath(path),
    ]
    if has_audio:
        args += ["-map", "0:a:0", "-f", "null", "-"]
    if tap:
        args += list(tap)
    else:
        args += ["-map", "0:v:0", "-fps_mode", "passthrough", "-enc_time_base:v", "demux",
                 "-f", "null", "-"]
    return args


async def decode(ffmpeg: str, path: Path | str, tap: Sequence[str] = (), *,
                 has_audio: bool, name: str | None = None) -> bytes:
    """Decode all of ``path``; returns what the tap wrote to stdout (``b""`` without a tap).

    ``has_audio``: whether ``path`` has an audio stream (its probe says), decoded too.
    Raises ``VerificationFailed`` when FFmpeg fails or logs any error (a damaged frame is
    concealed by the decoder and only shows up in the log).
    """
    name = name or Path(path).name
    done = await run_child(decode_command(ffmpeg, path, tap, has_audio=has_audio))
    errors = done.stderr.decode("utf-8", "replace").strip()
    if done.returncode != 0 or errors:
        first = errors.splitlines()[0][:STDERR_KEEP] if errors else f"status {done.returncode}"
        raise VerificationFailed(f"{name} does not decode cleanly: {first}")
    return done.stdout


def read_facts(path: Path, name: str) -> tuple[MediaInfo, StreamFacts]:
    """The file's probe and its streams' facts, from one opening (the default `Reader`)."""
    with open_checked(path, name) as container:
        try:
            info = describe(container, path)
        except NotAVideo as exc:
            raise VerificationFailed(f"{name} is not a valid video: {exc}") from None
        return info, stream_facts(container, info)


# Opening a file makes FFmpeg decode its first frames to learn what the headers leave out: for
# H.264 with B-frames, at least 7 of them to guess the decoder's delay (5 ms of CPU for one
# 768×576 output, half of reading all of its packets). A caller that decodes on its own and
# takes nothing from those frames opens with that decoding skipped.
_NO_PROBE_DECODE = [{"skip_frame": "all"}] * 2  # the outputs' video and audio stream


def open_checked(path: Path, name: str, *, probe_decode: bool = True
                 ) -> av.container.InputContainer:
    """``path`` opened for reading; ``VerificationFailed`` when it cannot be. Without
    ``probe_decode``, FFmpeg decodes no frame while it opens it (the streams' pixel and sample
    formats stay unknown until the caller decodes)."""
    try:
        if not probe_decode:
            try:
                return av.open(str(path), mode="r", stream_options=_NO_PROBE_DECODE)
            except ValueError:
                pass  # no stream shows before probing (MPEG program streams): open as usual
        return av.open(str(path), mode="r")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise VerificationFailed(f"{name} cannot be opened: {exc}") from None


def stream_facts(container: av.container.InputContainer, info: MediaInfo) -> StreamFacts:
    """The streams' tags and rates, and where they start and end: from the probe's reading
    of the packets (``info``), since the containers' own durations are estimates for MPEG
    program streams and wrong for variable-frame-rate footage (both made audio look 100 ms
    out of sync)."""
    tags = {f"format:{k}": str(v) for k, v in container.metadata.items()}
    v = container.streams.video[0] if container.streams.video else None
    a = container.streams.audio[0] if container.streams.audio else None
    for stream in container.streams:
        for k, val in stream.metadata.items():
            tags.setdefault(f"{stream.type}:{k}", str(val))
    start = info.video_start
    return StreamFacts(
        tags=tags,
        fps=float(v.average_rate or 0) if v is not None else 0.0,
        video_start=start,
        video_end=start + info.duration if start is not None else None,
        audio_start=info.audio_start,
        audio_end=info.audio_end,
        audio_rate=a.codec_context.sample_rate if a is not None else None,
    )


# -- helpers --------------------------------------------------------------------------------------


def _offset(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def _check_sync(name: str, facts: StreamFacts, reference: Reference, speed: float, fps: float) -> None:
    """Audio starts and ends where the source's did relative to the picture (offsets scaled by
    the speed factor), within one frame; at the end also one AAC frame, since AAC pads the
    audio to whole frames of 1024 samples. A source that does not say where its streams start
    or end is taken as starting together, and its ends are not compared."""
    frame = 1.0 / fps
    lead = _offset(facts.audio_start, facts.video_start)
    if lead is not None:
        drift = lead - (reference.audio_lead or 0.0) / speed
        if abs(drift) > frame:
            raise VerificationFailed(
                f"{name} is out of sync: audio starts {drift * 1000:+.0f} ms away from the picture"
            )
    tail = _offset(facts.audio_end, facts.video_end)
    if tail is not None and reference.audio_tail is not None:
        audio_frame = AAC_FRAME_SAMPLES / facts.audio_rate if facts.audio_rate else 0.0
        drift = tail - reference.audio_tail / speed
        if abs(drift) > frame + audio_frame:
            raise VerificationFailed(
                f"{name} is out of sync: audio ends {drift * 1000:+.0f} ms away from the picture"
            )


def _allowed_tag(key: str, value: str) -> bool:
    """Whether an output may carry this tag. The policy:

    - the MP4 brand tags, which only name the file format;
    - ``encoder`` when it names FFmpeg itself (``Lavf…`` for the muxer, ``Lavc…`` for an
      encoder): those are written by our render, not carried over from the source. (Our render
      runs bit-exact, so only the version-less ``Lavc libx264`` appears; a source's own encoder
      string, e.g. a camera's or an editor's, never passes);
    - ``language`` only as ``und`` and the handler names and vendor id only at FFmpeg's
      defaults, since other values come from the source.

    Everything else (title, comment, creation_time, location/GPS, Apple ``com.apple.*`` keys,
    dates, authors, …) fails.
    """
    scope, _, tag = key.partition(":")
    if scope == "format" and tag in _FORMAT_TAGS:
        return True
    if tag == "encoder":
        return value.startswith(("Lavf", "Lavc"))
    if scope != "format" and tag == "language":
        return value == "und"
    if scope != "format" and tag == "handler_name":
        return value in _DEFAULT_HANDLERS
    if scope != "format" and tag == "vendor_id":
        return value == _DEFAULT_VENDOR
    return False


def _check_tags(name: str, tags: dict[str, str], source_tags: dict[str, str]) -> None:
    for key, value in sorted(tags.items()):
        if _allowed_tag(key, value):
            continue
        origin = " (copied from the source)" if source_tags.get(key) == value else ""
        tag = key.partition(":")[2]
        raise VerificationFailed(
            f"{name} still carries metadata{origin}: {tag}={value[:80]!r}"
        )


def _even(x: int) -> int:
    # The filters round the output size down to even numbers (yuv420p needs them).
    return max(2, x // 2 * 2)
