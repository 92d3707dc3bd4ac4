"""Audio fingerprints (Chromaprint) and how alike two of them are: is a variation's sound new?

Platforms match uploads by their sound as well as their picture, with fingerprints of the
Chromaprint/AcoustID kind: 32 bits per ~0.124 s of audio (`ITEM_SECONDS`) taken from the
12 pitch classes of the spectrum. We compute the same fingerprint through the bundled FFmpeg's
``chromaprint`` muxer (no Python dependency), either as an extra output of a render
(`branch_filter` on a branch of the audio, then ``-map [label]`` and `output_args`) or on its
own from a file (`fingerprint`), and compare two with `similarity`: 1 − the bit-error rate of
their best-aligned overlap.

The muxer takes native-endian 16-bit PCM only (its one allowed codec), at most 2 channels and
at least 1000 Hz; Chromaprint works internally on mono at 11025 Hz. `branch_filter` converts
to exactly that, so any source (5.1 included) fits and Chromaprint's own resampler is skipped.
The ``raw`` format is Chromaprint's ``uint32`` array as it lies in memory, host byte order
(little-endian on x86 and ARM; `parse_raw`). The first ~2.3 s of audio yield no item (the
analysis windows fill first), so a clip must last about 4.3 s for `MIN_OVERLAP` items.

Measured with this module (espeak-ng speech and FFmpeg-generated chords, 10–12 s, through
real renders with AAC; tests/test_fingerprint.py; the default ``max_shift``):

- the same file: 1.000; the WAV against its AAC encode: 0.996; ±1 dB gain (`audio` family):
  1.000;
- unrelated audio (two espeak-ng sentences, speech against chords, two chord sequences): 0.58–0.60
  (0.52–0.58 at offset 0 only, 0.60–0.64 with ``max_shift=40``). Not 0.5: Chromaprint's bits
  are not independent coin flips, and the best of 17 offsets is taken;
- the default variations (tempo 0.95–1.06× with ``atempo``, gain ±1 dB): speech 0.86–0.99,
  chords 0.85–0.97 (14 draws each); 0.83–0.84 at the ends of the speed range. A tempo change
  stretches the fingerprint, so no single offset aligns all of it: the further from 1, the lower;
- the same variations with `+pitch` (3–5 % up or down, tempo kept; ``filters.audio_filter``):
  speech 0.57–0.69, that is 0.24–0.40 lower; chords 0.66–0.71, 0.19–0.31 lower: about as far
  as unrelated audio. At ±2 % speech came out only 0.10–0.20 lower (0.100 with a 0.95× tempo),
  which is why the family starts at 3 %. An EQ tilt (±3 dB shelves) moved no fingerprint by
  more than 0.005 (a 4 dB mid boost 0.026): Chromaprint normalises each frame's pitch classes;
- cost: the fingerprint branch takes 0.05–0.07 CPU s per minute of 48 kHz stereo (decoding it
  0.03 s); `similarity` well under a millisecond for two ten-minute fingerprints.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import trio

from pipeline.media.child import run_child

log = logging.getLogger("video_refresher")

# Chromaprint's internal rate and hop: one item per 4096/3 samples at 11025 Hz.
FINGERPRINT_RATE = 11025
ITEM_SECONDS = 4096 / 3 / FINGERPRINT_RATE
# How many items either fingerprint may be moved against the other (8: about a second). A
# render starts its outputs with the source, so a small window is enough; a wide one raises
# the best score of unrelated audio (0.58–0.60 at 8, 0.62–0.64 at 40).
DEFAULT_MAX_SHIFT = 8
# The shortest overlap worth a score (16 items: about two seconds, 512 bits). On fewer bits,
# the best of many offsets of unrelated audio comes out too high.
MIN_OVERLAP = 16


@functools.cache
def _popcount16() -> np.ndarray:
    """Set bits of every 16-bit number: popcount for numpy < 2 (no ``bitwise_count``). Built
    on first use, not at import (building it in Python took 9 ms of every start)."""
    numbers = np.arange(1 << 16, dtype=np.uint32)
    return sum(((numbers >> bit) & 1).astype(np.uint8) for bit in range(16))


def branch_filter() -> str:
    """The filter to put on the audio branch that feeds `output_args`: the one sample format
    the muxer accepts (16-bit), mono and Chromaprint's own rate (it resamples anything else
    itself; more than two channels the muxer refuses).

    It starts with its own ``aresample``, which converts whatever it is given: a branch of an
    ``asplit`` shares its format with the other branches, and an ``aformat`` alone there made
    FFmpeg's negotiation pick mono for the whole split, so every output encoded beside a
    fingerprint tap came out mono (a stereo music track's true peak rose from -3.0 to +1.4
    dBTP in the downmix)."""
    return (f"aresample={FINGERPRINT_RATE},"
            f"aformat=sample_fmts=s16:sample_rates={FINGERPRINT_RATE}:channel_layouts=mono")


def output_args(target: Path | str) -> list[str]:
    """FFmpeg output options (after the ``-map`` of a `branch_filter` branch) that write the
    raw fingerprint of that audio to ``target``: a `Path` (written as a ``file:`` URL, so no
    name is read as a protocol), or an FFmpeg URL as text (``pipe:1``, ``file:…``).

    The codec is left to the muxer, which allows only its own (native-endian 16-bit PCM). The
    file is written when FFmpeg ends the output; it holds no header (`parse_raw`).

    Example, one more output of a render::

        [a0]asplit[a0m][a0f];[a0f]<branch_filter()>[fp0]   ...   -map [fp0] <output_args(p)>
    """
    url = "file:" + os.fspath(target) if isinstance(target, Path) else target
    return ["-f", "chromaprint", "-fp_format", "raw", url]


def parse_raw(data: bytes) -> np.ndarray:
    """The items of a raw fingerprint (`output_args`) as ``uint32``.

    FFmpeg writes Chromaprint's array as it lies in memory: host byte order, which is also the
    order this reads. (Bit-error rates do not depend on the byte order anyway.) Raises
    ``ValueError`` when the length is not a whole number of items: a cut-off file.
    """
    if len(data) % 4:
        raise ValueError(f"a raw fingerprint has 4 bytes per item, got {len(data)} bytes")
    return np.frombuffer(data, dtype=np.dtype("=u4")).copy()


def similarity(a: np.ndarray, b: np.ndarray, max_shift: int = DEFAULT_MAX_SHIFT,
               min_overlap: int = MIN_OVERLAP) -> float | None:
    """How alike two fingerprints are: 1 − the bit-error rate of their best alignment.

    Every offset of ``b`` against ``a`` within ``max_shift`` items whose overlap has at least
    ``min_overlap`` items is scored by the set bits of the items' XOR; the best score is
    returned. 1.0: the same audio; about 0.6: unrelated audio (see the module docstring).

    ``None`` when there is nothing to compare: either is shorter than ``min_overlap`` (empty:
    no audio), or either carries no information, every item the same (digital silence or a
    steady tone, such as tests/clips.py's 440 Hz): two silent tracks would otherwise measure
    as identical, and no audio effect could change that.
    """
    a = np.asarray(a, dtype=np.uint32)
    b = np.asarray(b, dtype=np.uint32)
    if min(len(a), len(b)) < max(min_overlap, 1):
        return None
    if bool(np.all(a == a[0])) or bool(np.all(b == b[0])):
        return None
    best_errors, best_bits = None, 1
    for offset in range(-max_shift, max_shift + 1):
        x = a[offset:] if offset > 0 else a
        y = b[-offset:] if offset < 0 else b
        n = min(len(x), len(y))
        if n < min_overlap:
            continue
        errors = _popcount(x[:n] ^ y[:n])
        # Compare error rates without dividing: errors/bits < best_errors/best_bits.
        if best_errors is None or errors * best_bits < best_errors * (32 * n):
            best_errors, best_bits = errors, 32 * n
    if best_errors is None:
        return None
    return 1.0 - best_errors / best_bits


def _popcount(words: np.ndarray) -> int:
    """Set bits in all of ``words`` (``uint32``) together."""
    if hasattr(np, "bitwise_count"):
        return int(np.bitwise_count(words).sum(dtype=np.int64))
    halves = words.view(np.uint16)
    return int(_popcount16()[halves].sum(dtype=np.int64))


async def fingerprint(ffmpeg: str, path: Path | str, *,
                      max_seconds: float | None = None) -> np.ndarray | None:
    """The fingerprint of the first audio stream of ``path`` (its first ``max_seconds`` when
    given), computed on its own by FFmpeg; ``None`` when the file has no audio stream.

    An empty array means audio too short for one item (under ~2.3 s). For a render's outputs
    the extra output (`output_args`) spares this second decode; this one is for the source
    and for checking. Raises ``RuntimeError`` with FFmpeg's message when it fails otherwise.
    """
    limit = ["-t", f"{max_seconds:.3f}"] if max_seconds is not None else []
    done = await run_child([
        ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error",
        *limit, "-i", "file:" + os.fspath(path),
        # `?`: a file without audio maps nothing, and FFmpeg says so (below).
        "-map", "0:a:0?", "-af", branch_filter(), *output_args("pipe:1"),
    ])
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip()
        if "does not contain any stream" in message:
            return None
        raise RuntimeError(f"fingerprint of {Path(path).name} failed ({done.returncode}): "
                           f"{message[-2000:]}")
    return parse_raw(done.stdout)


def print_path(part: Path) -> Path:
    """Where a render writes an output's fingerprint: ``v01.mp4.part`` → ``v01.print.part``,
    ``v01.reroll1.mp4.part`` → ``v01.reroll1.print.part`` (a part file, so recovery removes a
    leftover one)."""
    return part.with_name(part.name.removesuffix(".part").removesuffix(".mp4") + ".print.part")


def read_print(path: Path | None) -> np.ndarray | None:
    """The fingerprint a render wrote to ``path`` (`output_args`); None when there is no such
    file or it is cut off."""
    if path is None:
        return None
    try:
        return parse_raw(path.read_bytes())
    except (OSError, ValueError):
        return None


async def audio_figures(ffmpeg: str, source: Path, outputs: Sequence[Path], *,
                        tapped: Sequence[Path | None] = (), source_tapped: Path | None = None,
                        concurrency: int = 2) -> list[dict | None]:
    """The audio half of each output's distinctness (the API's ``distinctness.audio``):
    ``{"metric": "chromaprint", "sourceSimilarity": …, "siblingSimilarity": …}``, where the
    sibling figure is the most similar other output's (None with one output, or when either
    sound is too short or constant to compare). None for every output when the source has no
    sound.

    The fingerprints come from what the render wrote (``source_tapped`` for the source,
    ``tapped[i]`` for output ``i``: the sound its AAC encoder was given, which measures
    within 0.004 of the encoded file's); one that is missing is taken from the file itself
    (an audio-only decode, about 0.03 CPU s per minute of sound), ``concurrency`` at a time.
    """
    paths = [Path(source), *map(Path, outputs)]
    taps = [source_tapped, *tapped, *[None] * (len(outputs) - len(tapped))]
    prints: list[np.ndarray | None] = [None] * len(paths)
    limit = trio.CapacityLimiter(concurrency)

    async def take(i: int) -> None:
        prints[i] = await trio.to_thread.run_sync(read_print, taps[i])
        if prints[i] is not None:
            return
        # A fingerprint that cannot be taken (FFmpeg failed, a cut-off raw file) only loses
        # its figures: raised inside the nursery it would come out as an ExceptionGroup.
        async with limit:
            try:
                prints[i] = await fingerprint(ffmpeg, paths[i])
            except (RuntimeError, ValueError, OSError) as exc:
                log.warning("audio fingerprint failed", extra={"file": paths[i].name,
                                                               "error": str(exc)[-300:]})

    async with trio.open_nursery() as nursery:
        for i in range(len(paths)):
            nursery.start_soon(take, i)
    src, outs = prints[0], prints[1:]
    if src is None:
        return [None] * len(outs)
    return [{"metric": "chromaprint",
             "sourceSimilarity": _rounded(similarity(src, fp) if fp is not None else None),
             "siblingSimilarity": _rounded(_closest_sibling(outs, i))}
            for i, fp in enumerate(outs)]


def _closest_sibling(prints: Sequence[np.ndarray | None], i: int) -> float | None:
    if prints[i] is None:
        return None
    scores = [similarity(prints[i], fp) for j, fp in enumerate(prints) if j != i and fp is not None]
    scores = [s for s in scores if s is not None]
    return max(scores) if scores else None


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
