"""The default decode check of a rendered output: every packet read, only sampled frames decoded.

``verify.decode`` (``VR_VERIFY=full``) decodes every frame of an output in an FFmpeg process, and
on a five-output render that was about a quarter of the video's CPU time. Our own encoder has
just written these files, so what can be wrong with them is their structure, not their bits:
a missing or reordered packet, a timestamp that goes backwards, a stream that stops early. This
check (``scan``) proves those in one PyAV pass, in the worker thread that runs it:

- every packet of the video and of the audio stream is read, none is empty or flagged corrupt,
  each carries a decode timestamp that strictly increases within its stream and a presentation
  timestamp, and the video has as many packets as its index lists;
- the video starts with a keyframe, and every keyframe is decoded (the decoder skips the frames
  between them, ``skip_frame=nokey``); every audio packet is decoded;
- both decoders run with ``err_detect=explode``, so damage that FFmpeg would otherwise conceal
  (and only log) fails the check: four bytes changed inside a keyframe are caught.

Error handling: ``VerificationFailed`` with a sentence naming the file and what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av

from pipeline.media.probe import MediaInfo, NotAVideo, describe
from pipeline.media.verify import StreamFacts, VerificationFailed, open_checked, stream_facts

# Decoder options: damage is an error, not something to conceal.
_STRICT = {"err_detect": "explode"}


@dataclass(frozen=True)
class Scanned:
    """What ``scan`` read: packets per stream and the frames it decoded, and the file's probe
    and streams' facts, read on the same pass (what ``verify.check_file`` checks)."""

    video_packets: int
    audio_packets: int
    keyframes: int  # video frames decoded
    audio_frames: int
    info: MediaInfo
    facts: StreamFacts


@dataclass
class _Stream:
    """One stream's running checks."""

    packets: int = 0
    decoded: int = 0
    last_dts: int | None = None


def scan(path: Path | str, *, name: str | None = None) -> Scanned:
    """Read every packet of ``path`` and decode its keyframes and its audio (module docstring),
    probing it on the same pass (``probe.describe``, which reads every packet too).

    Blocking: run it in a worker thread. Raises ``VerificationFailed``.
    """
    path = Path(path)
    name = name or path.name
    with open_checked(path, name, probe_decode=False) as container:
        if not container.streams.video:
            raise VerificationFailed(f"{name} has no video stream")
        video = container.streams.video[0]
        video.codec_context.options = {**_STRICT, "skip_frame": "nokey"}
        streams = [video]
        if container.streams.audio:
            audio = container.streams.audio[0]
            audio.codec_context.options = dict(_STRICT)
            streams.append(audio)
        state = {s.index: _Stream() for s in streams}

        def on_packet(packet: av.Packet) -> list[av.frame.Frame]:
            _check_packet(name, packet, state[packet.stream.index], packet.stream is video)
            frames = packet.decode()
            state[packet.stream.index].decoded += len(frames)
            return frames

        try:
            info = describe(container, path, on_packet=on_packet)
        except av.error.FFmpegError as exc:
            raise VerificationFailed(f"{name} does not decode cleanly: {_reason(exc)}") from None
        except NotAVideo as exc:
            raise VerificationFailed(f"{name} is not a valid video: {exc}") from None
        v = state[video.index]
        indexed = int(video.frames or 0)
        if indexed and v.packets != indexed:
            raise VerificationFailed(
                f"{name} holds {v.packets} video packets, its index lists {indexed}")
        if v.decoded == 0:
            raise VerificationFailed(f"{name} has no picture that decodes")
        a = state[streams[1].index] if len(streams) > 1 else _Stream()
        return Scanned(video_packets=v.packets, audio_packets=a.packets, keyframes=v.decoded,
                       audio_frames=a.decoded, info=info, facts=stream_facts(container, info))


def scan_facts(path: Path, name: str) -> tuple[MediaInfo, StreamFacts]:
    """`scan` as ``verify.check_file`` 's ``read``: the file checked packet by packet and its
    keyframes and audio decoded while it is probed."""
    scanned = scan(path, name=name)
    return scanned.info, scanned.facts


def _check_packet(name: str, packet: av.Packet, state: _Stream, is_video: bool) -> None:
    """One packet's checks; the demuxer's flush packet at the end (empty, no time) passes."""
    if packet.size == 0 and packet.dts is None:
        return
    kind = "video" if is_video else "audio"
    number = state.packets + 1
    if packet.size == 0:
        raise VerificationFailed(f"{name}: {kind} packet {number} is empty")
    if packet.is_corrupt:
        raise VerificationFailed(f"{name}: {kind} packet {number} is flagged corrupt")
    if packet.dts is None or packet.pts is None:
        raise VerificationFailed(f"{name}: {kind} packet {number} carries no timestamp")
    if state.last_dts is not None and packet.dts <= state.last_dts:
        raise VerificationFailed(
            f"{name}: {kind} timestamps do not increase at packet {number} "
            f"({packet.dts} after {state.last_dts})")
    if is_video and state.packets == 0 and not packet.is_keyframe:
        raise VerificationFailed(f"{name} does not start with a keyframe")
    state.last_dts = packet.dts
    state.packets += 1


def _reason(exc: av.error.FFmpegError) -> str:
    text = (getattr(exc, "strerror", None) or str(exc)).strip() or type(exc).__name__
    return text.splitlines()[0][:200]
