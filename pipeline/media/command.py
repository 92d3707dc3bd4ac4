"""The FFmpeg command line for one source video, and the parser for its progress output.

Pure: builds argument lists and parses text; starting, stopping and reaping the process is the
runner's job. One process decodes the source once and writes every variation
(docs/architecture.md):
``split``/``asplit`` in ``-filter_complex``, one output file per variation.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.media import fingerprint
from pipeline.media.distinct import Taps, output_times, tap_filter, tap_output
from pipeline.media.effects import VariationParams, expected_duration
from pipeline.media.encoder import Encoder, file_url
from pipeline.media.filters import audio_filter, video_filter
from pipeline.media.probe import MediaInfo


def filter_graph(info: MediaInfo, variations: Sequence[VariationParams],
                 taps: Taps | None = None) -> str:
    """The ``-filter_complex`` text: labels ``[v0]``… (and ``[a0]``… with audio), one per variation.

    With ``taps`` (``distinct.Taps``), also the frames of the distinctness measure, off the
    same decode: ``[tap0]``… for each variation, split off after its effects (the frames its
    encoder gets) at its ``distinct.output_times``, and ``[tapsrc]`` for the source when
    ``taps.source`` is set (``distinct.tap_filter``: a few RGB frames of ``taps.size``).

    Filters run at the *display* size: FFmpeg turns rotated phone videos upright while decoding
    (autorotate), so the frames the graph sees are already the way the viewer sees them.
    The source first goes through ``scale`` to that size: a stream whose picture size changes
    part-way (spliced broadcast files) makes FFmpeg rebuild the graph, and the crop windows,
    sized for the first picture, failed the render on a smaller one ("Invalid argument"). At
    the same size ``scale`` passes frames through untouched (no CPU time measured at 1080p).
    """
    n = len(variations)
    if n < 1:
        raise ValueError("at least one variation is needed")
    tap_source = taps is not None and taps.source is not None and bool(taps.times)
    tap_outputs = taps is not None and bool(taps.outputs) and bool(taps.times)
    if tap_outputs and len(taps.outputs) != n:
        raise ValueError(f"{n} variations but {len(taps.outputs)} frame taps")
    w, h = info.display_width, info.display_height
    parts: list[str] = []
    branches = n + (1 if tap_source else 0)
    # `V` (capital) skips cover art and thumbnails that MP4/MOV files may carry as video streams.
    source = f"[0:V:0]scale={w}:{h},"
    if branches == 1:
        video_inputs = [source]
    else:
        video_inputs = [f"[vs{i}]" for i in range(branches)]
        parts.append(source + "split=" + str(branches) + "".join(video_inputs))
    for i, params in enumerate(variations):
        chain = f"{video_inputs[i]}{video_filter(params, w, h)}"
        if tap_outputs:
            parts.append(f"{chain},split=2[v{i}][vt{i}]")
            times = output_times(taps.times, params.speed)
            parts.append(f"[vt{i}]{tap_filter(times, taps.size)}[tap{i}]")
        else:
            parts.append(f"{chain}[v{i}]")
    if tap_source:
        parts.append(f"{video_inputs[n]}{tap_filter(taps.times, taps.size)}[tapsrc]")
    if info.has_audio:
        parts += _audio_parts(variations, taps)
    return ";".join(parts)


def _audio_parts(variations: Sequence[VariationParams], taps: Taps | None) -> list[str]:
    """The audio half of `filter_graph`: ``[a0]``… and, when ``taps`` asks for fingerprints,
    ``[fp0]``… after each variation's filters and ``[fpsrc]`` off the source."""
    n = len(variations)
    print_outputs = taps is not None and bool(taps.prints)
    if print_outputs and len(taps.prints) != n:
        raise ValueError(f"{n} variations but {len(taps.prints)} fingerprint taps")
    print_source = taps is not None and taps.source_print is not None
    branches = n + (1 if print_source else 0)
    parts: list[str] = []
    if branches == 1:
        audio_inputs = ["[0:a:0]"]
    else:
        audio_inputs = [f"[as{i}]" for i in range(branches)]
        parts.append("[0:a:0]asplit=" + str(branches) + "".join(audio_inputs))
    for i, params in enumerate(variations):
        chain = f"{audio_inputs[i]}{audio_filter(params)}"
        if print_outputs:
            parts.append(f"{chain},asplit=2[a{i}][af{i}]")
            parts.append(f"[af{i}]{fingerprint.branch_filter()}[fp{i}]")
        else:
            parts.append(f"{chain}[a{i}]")
    if print_source:
        parts.append(f"{audio_inputs[n]}{fingerprint.branch_filter()}[fpsrc]")
    return parts


def output_graphs(info: MediaInfo, variations: Sequence[VariationParams]) -> list[str]:
    """One human-readable description of each variation's filters, for the manifest."""
    w, h = info.display_width, info.display_height
    graphs = []
    for params in variations:
        text = f"video: {video_filter(params, w, h)}"
        if info.has_audio:
            text += f" | audio: {audio_filter(params)}"
        graphs.append(text)
    return graphs


def build_render_command(
    ffmpeg: str,
    source: Path,
    info: MediaInfo,
    variations: Sequence[VariationParams],
    outputs: Sequence[Path],
    *,
    encoder: Encoder | None = None,
    taps: Taps | None = None,
) -> list[str]:
    """The argument list (for ``trio.run_process``/``subprocess``, never a shell) that renders
    every variation of ``source`` into ``outputs`` (same order) in one FFmpeg process.

    - Progress goes to stdout as ``-progress`` key=value blocks (see `ProgressParser`); errors
      go to stderr at ``-loglevel error``. Stdin is left open: writing ``q`` to it makes FFmpeg
      stop cleanly.
    - Every output gets ``encoder`` 's options (``encoder.Encoder.output_args``; default
      ``Encoder()``: x264 ultrafast CRF 23, uncapped): MP4 (the muxer is named, so ``*.part``
      names work) with ``+faststart``, H.264 ``yuv420p`` and AAC when the source has audio;
      upright at the source's display size with no rotation flag; no metadata from the source
      and no encoder tags.
    - ``taps`` (``distinct.Taps``) also writes the distinctness measure's frames as raw RGB:
      each variation's after its effects to ``taps.outputs[i]``, the source's to
      ``taps.source`` (one decode for all; the outputs are byte-identical with or without);
      with sound, the Chromaprint fingerprint of each variation's audio after its filters to
      ``taps.prints[i]`` and of the source's to ``taps.source_print``.

    Error handling: raises ``ValueError`` when the lists do not match.
    """
    if len(variations) != len(outputs):
        raise ValueError(f"{len(variations)} variations but {len(outputs)} output paths")
    encoder = encoder or Encoder()
    args = [
        ffmpeg,
        "-hide_banner",
        "-y",
        "-loglevel", "error",
        "-nostats",
        "-progress", "pipe:1",
        "-i", file_url(source),
        "-filter_complex", filter_graph(info, variations, taps),
    ]
    per_output = encoder.output_args(info.has_audio)
    for i, out in enumerate(outputs):
        args += ["-map", f"[v{i}]", *(["-map", f"[a{i}]"] if info.has_audio else []),
                 *per_output, file_url(out)]
    return args + _tap_outputs(taps, info.has_audio)


def _tap_outputs(taps: Taps | None, has_audio: bool) -> list[str]:
    """The raw-frame outputs of `filter_graph` 's ``[tap…]`` labels, and the fingerprint
    outputs of its ``[fp…]`` ones."""
    if taps is None:
        return []
    args: list[str] = []
    if taps.times:
        for i, path in enumerate(taps.outputs):
            args += ["-map", f"[tap{i}]", *tap_output(file_url(path))]
        if taps.source is not None:
            args += ["-map", "[tapsrc]", *tap_output(file_url(taps.source))]
    if has_audio:
        for i, path in enumerate(taps.prints):
            args += ["-map", f"[fp{i}]", *fingerprint.output_args(path)]
        if taps.source_print is not None:
            args += ["-map", "[fpsrc]", *fingerprint.output_args(taps.source_print)]
    return args


def progress_total(source_duration: float, variations: Sequence[VariationParams]) -> float:
    """The duration FFmpeg's ``out_time`` runs up to: that of the longest output.

    With several outputs FFmpeg reports one ``out_time``, and it follows the longest one.
    """
    return max(expected_duration(source_duration, p) for p in variations)


@dataclass(frozen=True)
class Progress:
    """One ``-progress`` block, reduced to what the pipeline shows."""

    out_time: float  # seconds of the longest output written so far
    percent: float  # 0..100 of the longest output, never decreasing
    done: bool  # FFmpeg wrote ``progress=end``
    frame: int | None = None
    speed: float | None = None  # times real time, if FFmpeg knows it yet


class ProgressParser:
    """Turns FFmpeg ``-progress`` output into `Progress` values, one per block.

    ``total`` is the expected duration of the longest output (`progress_total`). Feed it lines
    (`feed_line`) or raw bytes as they come from the pipe (`feed`, which keeps partial lines).
    """

    def __init__(self, total: float) -> None:
        self.total = total
        self._fields: dict[str, str] = {}
        self._buffer = b""
        self._percent = 0.0
        self._out_time = 0.0

    def feed(self, data: bytes) -> list[Progress]:
        """Parse a chunk of stdout; returns the blocks it completed, oldest first."""
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        updates = []
        for raw in lines:
            update = self.feed_line(raw.decode("utf-8", "replace"))
            if update is not None:
                updates.append(update)
        return updates

    def feed_line(self, line: str) -> Progress | None:
        """Parse one line; returns a `Progress` when the line ends a block."""
        key, sep, value = line.strip().partition("=")
        if not sep:
            return None
        key, value = key.strip(), value.strip()
        if key != "progress":
            self._fields[key] = value
            return None
        fields, self._fields = self._fields, {}
        done = value == "end"
        out_time = _out_time(fields)
        if out_time is not None:
            self._out_time = max(self._out_time, out_time)
        if done:
            self._percent = 100.0
        elif self.total > 0:
            self._percent = max(self._percent, min(100.0, 100.0 * self._out_time / self.total))
        return Progress(
            out_time=self._out_time,
            percent=round(self._percent, 2),
            done=done,
            frame=_int(fields.get("frame")),
            speed=_float(fields.get("speed", "").removesuffix("x")),
        )


def parse_progress(lines: Iterable[str], total: float) -> Iterator[Progress]:
    """`Progress` for each complete block in ``lines``."""
    parser = ProgressParser(total)
    for line in lines:
        update = parser.feed_line(line)
        if update is not None:
            yield update


def _out_time(fields: dict[str, str]) -> float | None:
    # `out_time_ms` is in microseconds too (a historical misnomer); both read "N/A" at first.
    for key in ("out_time_us", "out_time_ms"):
        us = _int(fields.get(key))
        if us is not None:
            return max(0.0, us / 1_000_000)
    text = fields.get("out_time")
    if text and text.count(":") == 2:
        h, m, s = text.split(":")
        try:
            return max(0.0, int(h) * 3600 + int(m) * 60 + float(s))
        except ValueError:
            return None
    return None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None
