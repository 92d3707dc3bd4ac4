"""Distinctness: how different each variation looks from its source and from its siblings.

The measure is Meta's PDQ (``pdqhash``: a 256-bit hash of a frame's 16×16 lowest DCT
coefficients, made to find near-duplicate images) of ``FRAME_COUNT`` frames taken at the same
*content* times in every file: a variation played at speed ``s`` shows content time ``t`` at
``t / s``. Two frames *match* when their hashes differ in at most ``MATCH_THRESHOLD`` bits (the
``VR_PDQ_MATCH`` setting; 31 is what PDQ's authors give for "the same picture"): a matcher would
call such a frame a copy. Each frame is compared under the 8 dihedral transforms of the other
side (identity, mirrors, quarter turns, transposes) and the smallest distance counts, so a plain
mirror or turn does not make a variation different. Unrelated frames differ in about 128 bits.

Where the frames come from: the render taps them (``Taps``, ``command.build_render_command``):
the source's off its own decode, and each variation's after its effects, before it is encoded,
as small RGB frames (``TAP_WIDTH`` wide) written to a raw file per output. The same frames make
the preview strips (``pipeline.media.preview``). When a tap is missing or short, ``sample_frames``
decodes the file instead (the start of it, up to just past the last time).

Why 16 frames: hashing costs about 0.7 ms a frame with all 8 transforms, so the count is set by
what the figures need, not by cost: 16 frames give a match count fine enough to tell one bad
moment from a copy, a median that one odd frame does not move, and every fourth frame for a
4-frame preview strip. Short clips get fewer (``frame_count``: more than two frames of footage
per target, so that no two targets pick the same frame).

Pure except ``sample_frames`` (runs FFmpeg through ``child.run_child``, which reaps it on
cancellation).
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.media import pdq
from pipeline.media.child import run_child

FRAME_COUNT = 16
# The tapped frames' width (height follows the display aspect, even): what PDQ is given and what
# the preview strips show. PDQ downsamples to 64×64 itself (a 3-pixel box every 5 pixels at this
# width). 320 = 5 × 64 makes that downsampling symmetric left to right, so a mirrored frame hashes
# to exactly the source's mirror transform (0 bits); at other sizes the box windows shift under a
# flip (a vertical flip, which no effect makes, measured 26–44 bits at a height of 180).
TAP_WIDTH = 320
# Default match threshold (bits of 256): PDQ's own recommendation for near-duplicate matching.
MATCH_THRESHOLD = 31
# PDQ's quality (0–100) says how much detail a frame has; below 50 its hash is mostly noise
# (a black or flat frame hashes alike whatever is done to it), so such frames are not compared,
# unless no frame of the pair is better (then all are, to keep a figure).
MIN_QUALITY = 50
# Frames are picked at or after each target time; output timestamps are rounded to 1/90000 s,
# so targets in an output are moved this much earlier to pick the very frame the source shows.
TIME_SLACK = 0.001


class SamplingFailed(Exception):
    """FFmpeg could not take the frames from a file."""


# -- where to look ------------------------------------------------------------------------------


def frame_count(duration: float, fps: float | None, count: int = FRAME_COUNT) -> int:
    """How many frames to compare: ``count``, fewer when the clip has no more than two frames
    per target (targets closer than that could pick the same frame, and with exactly two the
    last target falls on the last frame's time, which rounding can put past it)."""
    if not fps or fps <= 0:
        return count
    return max(1, min(count, (int(duration * fps) - 1) // 2))


def sample_times(duration: float, count: int = FRAME_COUNT) -> list[float]:
    """``count`` content times at the middles of equal slices of the source (never the very
    first or last frame, which are often black or a fade)."""
    if duration <= 0 or count < 1:
        return []
    return [duration * (k + 0.5) / count for k in range(count)]


def output_times(times: Sequence[float], speed: float) -> list[float]:
    """Where an output at ``speed`` shows the content ``times`` of its source."""
    return [max(0.0, t / speed - TIME_SLACK) for t in times]


def tap_size(width: int, height: int) -> tuple[int, int]:
    """The tapped frames' size for a picture of display size ``width``×``height``:
    ``TAP_WIDTH`` wide, the height following the aspect ratio, rounded to an even number."""
    return TAP_WIDTH, max(2, round(TAP_WIDTH * height / max(1, width) / 2) * 2)


def tap_filter(times: Sequence[float], size: tuple[int, int]) -> str:
    """The video filter that keeps the first frame at or after each of ``times`` (seconds from
    the start) and turns it into an RGB frame of ``size``; ``select`` sees every frame, and the
    frames come out in time order."""
    if not times:
        raise ValueError("at least one time is needed")
    terms = "+".join(
        f"gte(t\\,{t:.6f})*(isnan(prev_t)+lt(prev_t\\,{t:.6f}))" for t in times
    )
    w, h = size
    return f"select='{terms}',scale={w}:{h}:flags=area,format=rgb24"


def tap_output(target: str) -> list[str]:
    """FFmpeg output arguments (after the ``-map``) that write a `tap_filter` 's frames as raw
    bytes to ``target`` (``pipe:1`` or a ``file:`` URL), on the input's own clock (as in
    ``verify.decode_command``: no frame re-timing)."""
    return ["-fps_mode", "passthrough", "-enc_time_base:v", "demux", "-f", "rawvideo", target]


@dataclass(frozen=True)
class Taps:
    """What a render taps: frames at content ``times`` of ``size``, the source's to ``source``
    and each variation's (after its effects, at `output_times`) to ``outputs`` (in variation
    order; empty: none); and, for a source with sound, the audio fingerprints
    (``fingerprint.branch_filter``) of each variation's sound after its effects to ``prints``
    and of the source's to ``source_print``."""

    times: tuple[float, ...]
    size: tuple[int, int]
    outputs: tuple[Path, ...] = ()
    source: Path | None = None
    prints: tuple[Path, ...] = ()
    source_print: Path | None = None

    @classmethod
    def plan(cls, duration: float, fps: float | None, width: int, height: int,
             outputs: Sequence[Path] = (), source: Path | None = None) -> Taps:
        """The taps for a source of this duration, rate and display size."""
        times = sample_times(duration, frame_count(duration, fps))
        return cls(tuple(times), tap_size(width, height), tuple(outputs), source)


def frames_path(part: Path) -> Path:
    """Where a render taps an output's frames: ``v01.mp4.part`` → ``v01.frames.part``,
    ``v01.reroll1.mp4.part`` → ``v01.reroll1.frames.part`` (a part file too, so recovery
    removes a leftover one)."""
    return part.with_name(part.name.removesuffix(".part").removesuffix(".mp4") + ".frames.part")


def read_frames(raw: bytes, size: tuple[int, int]) -> list[np.ndarray]:
    """Split a tap's bytes into ``h×w×3`` RGB frames (a trailing partial one is dropped)."""
    w, h = size
    n = w * h * 3
    return [np.frombuffer(raw, np.uint8, n, i).reshape(h, w, 3)
            for i in range(0, len(raw) - n + 1, n)]


def read_frames_file(path: Path | None, size: tuple[int, int]) -> list[np.ndarray]:
    """The frames in a tap file; none when there is no such file."""
    if path is None:
        return []
    try:
        return read_frames(path.read_bytes(), size)
    except FileNotFoundError:
        return []


def sample_command(ffmpeg: str, path: Path | str, times: Sequence[float],
                   size: tuple[int, int]) -> list[str]:
    """The FFmpeg argument list that writes the frames of ``path`` at ``times`` to stdout,
    decoded as the render decodes its source (upright, timestamps from 0) and only up to just
    past the last time."""
    stop = max(times) + 1.0
    return [
        ffmpeg, "-hide_banner", "-nostdin", "-v", "error",
        "-t", f"{stop:.3f}",
        "-i", "file:" + os.fspath(path),
        "-map", "0:v:0", "-vf", tap_filter(times, size), *tap_output("pipe:1"),
    ]


async def sample_frames(ffmpeg: str, path: Path | str, times: Sequence[float],
                        size: tuple[int, int]) -> list[np.ndarray]:
    """The frames of ``path`` at ``times`` (a source's content times, or an output's
    `output_times`). Raises ``SamplingFailed``."""
    done = await run_child(sample_command(ffmpeg, path, times, size))
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip()[-300:]
        raise SamplingFailed(f"could not take frames from {Path(path).name}: {tail}")
    return read_frames(done.stdout, size)


# -- hashing and distances ------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class FrameHash:
    """One frame's PDQ hashes: ``bits[0]`` the frame as it is, ``bits[1:]`` its other 7
    dihedral transforms (8×256 booleans); ``quality`` PDQ's 0–100."""

    bits: np.ndarray
    quality: int


def frame_hashes(frames: Sequence[np.ndarray]) -> tuple[FrameHash, ...]:
    """PDQ of each RGB frame under each of the 8 dihedral transforms (identity first), as
    ``pdqhash.compute_dihedral`` gives them, bit for bit.

    The wheel's code computes each frame's 16×16 DCT (`pdq.dct`, without the GIL); the 8
    hashes are taken from it here for all frames at once (`dihedral_bits`), instead of the 8
    bit lists ``compute_dihedral`` builds in Python for every frame (96 tapped frames of
    320×240: 69 ms of CPU against 91 ms, before `pdq.dct` took a further quarter off)."""
    if not frames:
        return ()
    dcts, qualities = zip(*(pdq.dct(f) for f in frames), strict=True)
    bits = dihedral_bits(np.stack(dcts))
    return tuple(FrameHash(b, int(q)) for b, q in zip(bits, qualities, strict=True))


# PDQ's DCT coefficients of a transformed picture, from those of the picture (PDQ's
# pdqhashing.cpp, ``dct16OriginalTo*``): a transpose for the quarter turns and the diagonal
# flips, and a sign change of every other row and/or column (its frequencies count from 1, so
# the even 0-based rows and columns change sign). In ``compute_dihedral`` 's order.
_ROW, _COL = np.indices((16, 16))
_EVEN_ROW = np.where(_ROW % 2 == 0, -1, 1).astype(np.float32)
_EVEN_COL = np.where(_COL % 2 == 0, -1, 1).astype(np.float32)
_ODD_SUM = np.where((_ROW + _COL) % 2 == 1, -1, 1).astype(np.float32)
_DIHEDRAL = (
    (False, None),  # the picture as it is
    (True, _EVEN_ROW),  # turned 90°
    (False, _ODD_SUM),  # 180°
    (True, _EVEN_COL),  # 270°
    (False, _EVEN_ROW),  # flipped about the x axis
    (False, _EVEN_COL),  # flipped about the y axis
    (True, None),  # flipped about the main diagonal
    (True, _ODD_SUM),  # flipped about the other diagonal
)


def dihedral_bits(dcts: np.ndarray) -> np.ndarray:
    """``F×256`` DCT outputs in ``compute_float`` 's order → ``F×8×256`` booleans: for each
    dihedral transform, each coefficient above the lower median of the 256 (PDQ's ``torben``),
    in ``compute_dihedral`` 's bit order. Pure."""
    grid = np.asarray(dcts, dtype=np.float32)[:, ::-1].reshape(-1, 16, 16)
    turned = grid.transpose(0, 2, 1)
    parts = []
    for transpose, sign in _DIHEDRAL:
        m = turned if transpose else grid
        parts.append(m if sign is None else m * sign)
    flat = np.stack(parts, axis=1).reshape(len(grid), 8, 256)
    median = np.partition(flat, 127, axis=-1)[..., 127:128]
    return (flat > median)[..., ::-1]


def frame_distance(a: FrameHash, b: FrameHash) -> int:
    """Bits apart, the smallest over the dihedral transforms of either side (symmetric)."""
    return int(min(np.count_nonzero(a.bits[0] != b.bits, axis=1).min(),
                   np.count_nonzero(b.bits[0] != a.bits, axis=1).min()))


@dataclass(frozen=True)
class Comparison:
    """Frame-by-frame distances of two files at the same content moments."""

    distances: tuple[int, ...]

    def matches(self, threshold: int) -> int:
        return sum(1 for d in self.distances if d <= threshold)

    @property
    def median(self) -> int:
        # The lower median: a distance that was measured, and the closer one on a tie.
        return int(statistics.median_low(self.distances))


def compare(a: Sequence[FrameHash], b: Sequence[FrameHash]) -> Comparison | None:
    """Frame ``k`` of ``a`` against frame ``k`` of ``b``, over the frames both have, leaving out
    those where either side is below `MIN_QUALITY` (all of them are kept when none is above).
    ``None`` when one side has no frames."""
    n = min(len(a), len(b))
    if n == 0:
        return None
    usable = [k for k in range(n) if min(a[k].quality, b[k].quality) >= MIN_QUALITY]
    return Comparison(tuple(frame_distance(a[k], b[k]) for k in usable or range(n)))


@dataclass(frozen=True)
class DistanceTable:
    """N variations compared with their source and with each other."""

    source: tuple[Comparison | None, ...]
    siblings: tuple[tuple[Comparison | None, ...], ...]  # symmetric; None on the diagonal
    threshold: int = MATCH_THRESHOLD

    @classmethod
    def measure(cls, source: Sequence[FrameHash], variations: Sequence[Sequence[FrameHash]],
                threshold: int = MATCH_THRESHOLD) -> DistanceTable:
        n = len(variations)
        sib: list[list[Comparison | None]] = [[None] * n for _ in range(n)]
        for i in range(n):
            for j in range(i + 1, n):
                sib[i][j] = sib[j][i] = compare(variations[i], variations[j])
        return cls(tuple(compare(source, v) for v in variations),
                   tuple(tuple(row) for row in sib), threshold)

    def replaced(self, i: int, source: Sequence[FrameHash],
                 variations: Sequence[Sequence[FrameHash]]) -> DistanceTable:
        """The table once variation ``i`` is replaced by ``variations[i]`` (only its row and
        column are measured again)."""
        sib = [list(row) for row in self.siblings]
        for j in range(len(variations)):
            if j != i:
                sib[i][j] = sib[j][i] = compare(variations[i], variations[j])
        src = list(self.source)
        src[i] = compare(source, variations[i])
        return DistanceTable(tuple(src), tuple(tuple(row) for row in sib), self.threshold)

    def _siblings(self, i: int) -> list[Comparison]:
        return [c for j, c in enumerate(self.siblings[i]) if j != i and c is not None]

    def worst_sibling(self, i: int) -> Comparison | None:
        """The sibling comparison of ``i`` that looks most alike: most matches, then the
        smallest median distance."""
        return min(self._siblings(i), key=lambda c: (-c.matches(self.threshold), c.median),
                   default=None)

    def report(self, i: int, rerolls: int = 0) -> dict | None:
        """The figures of variation ``i`` (stored per output, in the manifest and the job API;
        camelCase is the API's); ``None`` when it could not be compared with its source."""
        src = self.source[i]
        if src is None:
            return None
        sib = self.worst_sibling(i)
        return {
            "video": {
                "metric": "pdq",
                "frames": len(src.distances),
                "sourceMatches": src.matches(self.threshold),
                "sourceDistance": src.median,
                "siblingMatches": sib.matches(self.threshold) if sib is not None else None,
                "siblingDistance": sib.median if sib is not None else None,
            },
            "audio": None,
            "rerolls": rerolls,
        }

    def too_close(self) -> list[int]:
        """The variations to re-roll, in index order: each one with a frame matching its source,
        and of each pair of siblings with a matching frame, the later one (re-rolling one of the
        two separates them; keeping the earlier keeps the order of the names stable).
        Unmeasured comparisons (``None``) never trigger a re-roll."""
        t = self.threshold
        picked = {i for i, c in enumerate(self.source) if c is not None and c.matches(t)}
        n = len(self.source)
        for i in range(n):
            for j in range(i + 1, n):
                c = self.siblings[i][j]
                if c is not None and c.matches(t) and i not in picked and j not in picked:
                    picked.add(j)
        return sorted(picked)

    def score(self, i: int) -> tuple[int, float]:
        """How distinct variation ``i`` is, higher is better: fewer matching frames (with the
        source and every sibling), then the larger smallest median distance."""
        compared = [c for c in (self.source[i], *self._siblings(i)) if c is not None]
        matches = sum(c.matches(self.threshold) for c in compared)
        return -matches, min((c.median for c in compared), default=float("inf"))


@dataclass(frozen=True)
class FormatTables:
    """A video's variations measured in each of its formats: one `DistanceTable` per format
    (each output against the source in the same format, and against its siblings there). A
    variation is too close when it is in any format, and scores by all of them."""

    tables: tuple[DistanceTable, ...]

    @classmethod
    def measure(cls, sources: Sequence[Sequence[FrameHash]],
                variations: Sequence[Sequence[Sequence[FrameHash]]],
                threshold: int = MATCH_THRESHOLD) -> FormatTables:
        """``sources[k]``: the source's hashes in format ``k``; ``variations[i][k]``: variation
        ``i`` 's in format ``k``."""
        return cls(tuple(DistanceTable.measure(src, [v[k] for v in variations], threshold)
                         for k, src in enumerate(sources)))

    def replaced(self, i: int, sources: Sequence[Sequence[FrameHash]],
                 variations: Sequence[Sequence[Sequence[FrameHash]]]) -> FormatTables:
        return FormatTables(tuple(t.replaced(i, sources[k], [v[k] for v in variations])
                                  for k, t in enumerate(self.tables)))

    def too_close(self) -> list[int]:
        return sorted({i for t in self.tables for i in t.too_close()})

    def score(self, i: int) -> tuple[int, float]:
        """`DistanceTable.score` over every format: all matching frames, the smallest median."""
        scores = [t.score(i) for t in self.tables]
        return sum(s[0] for s in scores), min(s[1] for s in scores)

    def report(self, i: int, rerolls: int = 0) -> tuple[dict | None, ...]:
        """Variation ``i`` 's figures in each format."""
        return tuple(t.report(i, rerolls) for t in self.tables)
