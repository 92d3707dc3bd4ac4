"""The FFmpeg command line for one source video, and the parser for its progress output.

Pure: builds argument lists and parses text; starting, stopping and reaping the process is the
runner's job. One process decodes the source once and writes every variation
(docs/architecture.md):
``split``/``asplit`` in ``-filter_complex``, one output file per variation.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.media import fingerprint, formats
from pipeline.media.distinct import Taps, output_times, tap_filter, tap_output
from pipeline.media.effects import VariationParams, expected_duration
from pipeline.media.encoder import Encoder, file_url
from pipeline.media.filters import audio_filter, video_filter
from pipeline.media.formats import Placement
from pipeline.media.loudness import Normalise
from pipeline.media.probe import MediaInfo


def filter_graph(info: MediaInfo, variations: Sequence[VariationParams],
                 taps: Taps | Sequence[Taps] | None = None,
                 placement: Placement | None = None,
                 normalise: Normalise | None = None) -> str:
    """The ``-filter_complex`` text: labels ``[v0]``… (and ``[a0]``… with audio), one per output.

    Outputs are the variations in each of ``placement`` 's formats, variation by variation:
    output ``j`` is variation ``j // F`` in format ``j % F`` (F formats; the default, the
    source's shape only, gives one output per variation). Each variation's picture is made
    once and ``split`` per format (``formats.format_filters``), its sound once and ``asplit``.
    With ``normalise`` (``loudness.Normalise``), each variation's sound ends in the gain and
    the true-peak limiter that take it to the job's loudness target.

    With ``taps`` (``distinct.Taps``, one per format; a single one for one format), also the
    frames of the distinctness measure, off the same decode: ``[tap<j>]`` for output ``j``
    (split off the frames its encoder gets, at ``distinct.output_times``), and the source's
    through each format's geometry, ``[tapsrc]`` (first format) and ``[tapsrc<k>]``, when that
    format's ``taps.source`` is set (``distinct.tap_filter``: a few RGB frames of its size).

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
    placement = placement or Placement()
    shapes = placement.formats
    per_format = _per_format_taps(taps, len(shapes), n)
    w, h = info.display_width, info.display_height
    source_taps = [k for k, t in enumerate(per_format) if t.source is not None and t.times]
    parts: list[str] = []
    branches = n + len(source_taps)
    # `V` (capital) skips cover art and thumbnails that MP4/MOV files may carry as video streams.
    source = f"[0:V:0]scale={w}:{h},"
    if branches == 1:
        video_inputs = [source]
    else:
        video_inputs = [f"[vs{i}]" for i in range(branches)]
        parts.append(source + "split=" + str(branches) + "".join(video_inputs))
    for i, params in enumerate(variations):
        chain = video_filter(params, w, h, info.display_sar)
        parts += _variation_video(i, f"{video_inputs[i]}{chain}",
                                  params, placement, per_format, (w, h, info.display_sar))
    for branch, k in enumerate(source_taps, start=n):
        t = per_format[k]
        label = "[tapsrc]" if k == 0 else f"[tapsrc{k}]"
        if shapes[k] == formats.SOURCE:
            parts.append(f"{video_inputs[branch]}{tap_filter(t.times, t.size)}{label}")
            continue
        parts += formats.format_filters(shapes[k], placement.fit, placement.focus, w, h,
                                        video_inputs[branch], f"[fs{k}]", f"s{k}",
                                        info.display_sar)
        parts.append(f"[fs{k}]{tap_filter(t.times, t.size)}{label}")
    if info.has_audio:
        parts += _audio_parts(variations, per_format[0] if per_format else None,
                              len(shapes), normalise)
    return ";".join(parts)


def _per_format_taps(taps: Taps | Sequence[Taps] | None, count: int, n: int) -> list[Taps]:
    """``taps`` as one per format (none: an empty list), checked against the variations."""
    if taps is None:
        return []
    per_format = [taps] if isinstance(taps, Taps) else list(taps)
    if len(per_format) != count:
        raise ValueError(f"{count} formats but {len(per_format)} sets of taps")
    for t in per_format:
        if t.outputs and t.times and len(t.outputs) != n:
            raise ValueError(f"{n} variations but {len(t.outputs)} frame taps")
    return per_format


def _variation_video(i: int, chain: str, params: VariationParams, placement: Placement,
                     per_format: list[Taps], picture: tuple[int, int, float]) -> list[str]:
    """Variation ``i`` 's picture (``chain``; ``picture``: its display width, height and pixel
    aspect) as its outputs ``[v<j>]``, one per format, each with its frame tap ``[tap<j>]``
    when the format's taps ask for one."""
    w, h, sar = picture
    count = len(placement.formats)
    if count == 1 and placement.formats[0] == formats.SOURCE:
        # The source's shape only: the variation's frames are the output's.
        return _tapped(chain, i, i, params, per_format[0] if per_format else None)
    parts = [f"{chain},split={count}" + "".join(f"[vf{i}_{k}]" for k in range(count))
             if count > 1 else f"{chain}[vf{i}_0]"]
    for k, fmt in enumerate(placement.formats):
        j = i * count + k
        parts += formats.format_filters(fmt, placement.fit, placement.focus, w, h,
                                        f"[vf{i}_{k}]", f"[vp{j}]", f"p{j}", sar)
        parts += _tapped(f"[vp{j}]null", j, i, params, per_format[k] if per_format else None)
    return parts


def _tapped(chain: str, j: int, i: int, params: VariationParams, taps: Taps | None) -> list[str]:
    """``chain`` as output ``[v<j>]``, and its frames as ``[tap<j>]`` when ``taps`` has a
    file for variation ``i``."""
    if taps is None or not taps.outputs or not taps.times:
        return [f"{chain}[v{j}]"]
    times = output_times(taps.times, params.speed)
    return [f"{chain},split=2[v{j}][vt{j}]", f"[vt{j}]{tap_filter(times, taps.size)}[tap{j}]"]


# Sound the source lost (damaged packets leave a gap in its timestamps) comes back as silence
# (a gap over 0.1 s, ``min_hard_comp``), so what follows stays in step with the picture: without
# it a 0.23 s hole made every variation's sound run 0.2 s early and fail its sync check. Intact
# sound passes through it bit for bit. Applied once, to the source's sound before it is split:
# the variations and the source's fingerprint hear the same sound, and a source whose clock
# jumps far ahead makes its silence once, not once per variation.
FILL_GAPS = "aresample=async=1"


def audio_chain(params: VariationParams, normalise: Normalise | None = None) -> str:
    """A variation's sound after `FILL_GAPS`: its effects (``filters.audio_filter``); with a
    loudness target (``loudness.Normalise``), the target's gain and limiter instead of its own
    random gain."""
    if normalise is None:
        return audio_filter(params)
    chain = audio_filter(replace(params, gain_db=0.0))
    return ("" if chain == "anull" else chain + ",") + normalise.filter()


def _audio_parts(variations: Sequence[VariationParams], taps: Taps | None,
                 count: int = 1, normalise: Normalise | None = None) -> list[str]:
    """The audio half of `filter_graph`: ``[a<j>]``, one per output (``count`` formats per
    variation), and, when ``taps`` asks for fingerprints, ``[fp<i>]`` after each variation's
    filters and ``[fpsrc]`` off the source."""
    n = len(variations)
    print_outputs = taps is not None and bool(taps.prints)
    if print_outputs and len(taps.prints) != n:
        raise ValueError(f"{n} variations but {len(taps.prints)} fingerprint taps")
    print_source = taps is not None and taps.source_print is not None
    branches = n + (1 if print_source else 0)
    parts: list[str] = []
    if branches == 1:
        parts.append(f"[0:a:0]{FILL_GAPS}[as0]")
        audio_inputs = ["[as0]"]
    else:
        audio_inputs = [f"[as{i}]" for i in range(branches)]
        parts.append(f"[0:a:0]{FILL_GAPS},asplit={branches}" + "".join(audio_inputs))
    for i, params in enumerate(variations):
        chain = f"{audio_inputs[i]}{audio_chain(params, normalise)}"
        labels = [f"[a{i * count + k}]" for k in range(count)]
        labels += [f"[af{i}]"] if print_outputs else []
        if len(labels) == 1:
            parts.append(f"{chain}{labels[0]}")
        else:
            parts.append(f"{chain},asplit={len(labels)}" + "".join(labels))
        if print_outputs:
            parts.append(f"[af{i}]{fingerprint.branch_filter()}[fp{i}]")
    if print_source:
        parts.append(f"{audio_inputs[n]}{fingerprint.branch_filter()}[fpsrc]")
    return parts


def output_graphs(info: MediaInfo, variations: Sequence[VariationParams],
                  placement: Placement | None = None,
                  normalise: Normalise | None = None) -> list[str]:
    """One human-readable description of each output's filters (`filter_graph` 's order), for
    the manifest: ``video: <chain>``, then ``| format <name> <fit>: <graph>`` for a format
    other than the source's, then ``| audio: <chain>``."""
    placement = placement or Placement()
    w, h = info.display_width, info.display_height
    graphs = []
    for params in variations:
        for k, fmt in enumerate(placement.formats):
            text = f"video: {video_filter(params, w, h, info.display_sar)}"
            if fmt != formats.SOURCE:
                inner = formats.format_filters(fmt, placement.fit, placement.focus, w, h,
                                               "[in]", "[out]", f"f{k}", info.display_sar)
                text += f" | format {fmt} {placement.fit}: {';'.join(inner)}"
            if info.has_audio:  # the source's sound as every variation hears it, then its own
                text += f" | audio: {FILL_GAPS},{audio_chain(params, normalise)}"
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
    taps: Taps | Sequence[Taps] | None = None,
    placement: Placement | None = None,
    normalise: Normalise | None = None,
) -> list[str]:
    """The argument list (for ``trio.run_process``/``subprocess``, never a shell) that renders
    every variation of ``source`` in each of ``placement`` 's formats into ``outputs``
    (`filter_graph` 's order: variation by variation, its formats in turn) in one FFmpeg
    process.

    - Progress goes to stdout as ``-progress`` key=value blocks (see `ProgressParser`); errors
      go to stderr at ``-loglevel error``. Stdin is left open: writing ``q`` to it makes FFmpeg
      stop cleanly.
    - Every output gets ``encoder`` 's options (``encoder.Encoder.output_args``; default
      ``Encoder()``: x264 ultrafast CRF 23, uncapped): MP4 (the muxer is named, so ``*.part``
      names work) with ``+faststart``, H.264 ``yuv420p`` and AAC when the source has audio;
      upright at its format's display size (``formats.output_size``) with no rotation flag;
      no metadata from the source and no encoder tags.
    - ``taps`` (``distinct.Taps``, one per format) also writes the distinctness measure's
      frames as raw RGB: each output's after its effects to its format's ``taps.outputs[i]``,
      the source's in each format's geometry to that format's ``taps.source`` (one decode for
      all; the outputs are byte-identical with or without); with sound, the Chromaprint
      fingerprint of each variation's audio after its filters to the first format's
      ``taps.prints[i]`` and of the source's to its ``taps.source_print``.
    - ``normalise`` (``loudness.Normalise``) moves each variation's sound to a loudness target.

    Error handling: raises ``ValueError`` when the lists do not match.
    """
    placement = placement or Placement()
    count = len(placement.formats)
    if len(variations) * count != len(outputs):
        raise ValueError(f"{len(variations)} variations in {count} formats but "
                         f"{len(outputs)} output paths")
    encoder = encoder or Encoder()
    args = [
        ffmpeg,
        "-hide_banner",
        "-y",
        "-loglevel", "error",
        "-nostats",
        "-progress", "pipe:1",
        "-i", file_url(source),
        "-filter_complex", filter_graph(info, variations, taps, placement, normalise),
    ]
    per_output = encoder.output_args(info.has_audio)
    for j, out in enumerate(outputs):
        args += ["-map", f"[v{j}]", *(["-map", f"[a{j}]"] if info.has_audio else []),
                 *per_output, file_url(out)]
    if taps is None:
        return args
    per_format = [taps] if isinstance(taps, Taps) else list(taps)
    return args + _tap_outputs(per_format, count, info.has_audio)


def _tap_outputs(per_format: list[Taps], count: int, has_audio: bool) -> list[str]:
    """The raw-frame outputs of `filter_graph` 's ``[tap…]`` labels, and the fingerprint
    outputs of its ``[fp…]`` ones."""
    args: list[str] = []
    for k, taps in enumerate(per_format):
        if not taps.times:
            continue
        for i, path in enumerate(taps.outputs):
            args += ["-map", f"[tap{i * count + k}]", *tap_output(file_url(path))]
        if taps.source is not None:
            label = "[tapsrc]" if k == 0 else f"[tapsrc{k}]"
            args += ["-map", label, *tap_output(file_url(taps.source))]
    first = per_format[0] if per_format else None
    if has_audio and first is not None:
        for i, path in enumerate(first.prints):
            args += ["-map", f"[fp{i}]", *fingerprint.output_args(path)]
        if first.source_print is not None:
            args += ["-map", "[fpsrc]", *fingerprint.output_args(first.source_print)]
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
