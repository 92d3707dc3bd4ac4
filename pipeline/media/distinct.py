"""Distinctness: how different each variation looks from its source and from its siblings.

The measure is the perceptual hash (pHash, ``imagehash``: the signs of the 8×8 lowest DCT
coefficients of a 32×32 grey thumbnail, 64 bits) of a few frames taken at the same *content*
times in every file. A variation played at speed ``s`` shows content time ``t`` at ``t / s``.
Two files are as far apart as the median Hamming distance over those frames, minimised over the
8 dihedral transforms (identity, mirrors, quarter turns, transposes) applied to one side: a
plain mirror or turn does not make a creative different, so it does not count. pHash hardly
sees colour, grain or tempo either; what moves it is geometry (zoom, pan, tilt).

Scale: 0 means the same picture; unrelated clips measure 22–30 (half the bits differ, less the
minimum over 8 transforms). Every hash has exactly 32 bits set, so distances between single
frames are even. Measurements and the choice of the default minimum: docs/distinctness.md.

Cost: the frames come off decodes that happen anyway (``tap_args`` rides on the verification
decode of each output) plus one partial decode of the source (``sample_source``); hashing five
64×64 thumbnails eight ways takes milliseconds.

Pure except ``sample_source`` (runs FFmpeg through ``child.run_child``, which reaps it on
cancellation).
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image

from pipeline.media.child import run_child

SAMPLE_COUNT = 5
# Frames are scaled (box filter) to this square grey thumbnail before hashing; pHash then
# resizes to 32×32 itself. Squashing the aspect ratio is harmless: every file is squashed alike.
THUMB = 64
# Frames are picked at or after each target time; output timestamps are rounded to 1/90000 s,
# so targets in an output are moved this much earlier to pick the very frame the source shows.
TIME_SLACK = 0.001

_TRANSPOSES = (
    None,
    Image.Transpose.FLIP_LEFT_RIGHT,
    Image.Transpose.FLIP_TOP_BOTTOM,
    Image.Transpose.ROTATE_90,
    Image.Transpose.ROTATE_180,
    Image.Transpose.ROTATE_270,
    Image.Transpose.TRANSPOSE,
    Image.Transpose.TRANSVERSE,
)

# One frame's hashes: index 0 is the frame as it is, 1..7 its other dihedral transforms.
FrameHashes = tuple[imagehash.ImageHash, ...]


class SamplingFailed(Exception):
    """FFmpeg could not take the thumbnails from a file."""


# -- where to look ------------------------------------------------------------------------------


def sample_times(duration: float, count: int = SAMPLE_COUNT) -> list[float]:
    """``count`` content times at the middles of equal slices of the source (never the very
    first or last frame, which are often black or a fade)."""
    if duration <= 0 or count < 1:
        return []
    return [duration * (k + 0.5) / count for k in range(count)]


def output_times(times: Sequence[float], speed: float) -> list[float]:
    """Where an output at ``speed`` shows the content ``times`` of its source."""
    return [max(0.0, t / speed - TIME_SLACK) for t in times]


def tap_filter(times: Sequence[float]) -> str:
    """The video filter that keeps the first frame at or after each of ``times`` (seconds from
    the start) and turns it into a grey ``THUMB``×``THUMB`` thumbnail; ``select`` sees every
    frame, and the thumbnails come out in time order."""
    if not times:
        raise ValueError("at least one time is needed")
    terms = "+".join(
        f"gte(t\\,{t:.6f})*(isnan(prev_t)+lt(prev_t\\,{t:.6f}))" for t in times
    )
    return f"select='{terms}',scale={THUMB}:{THUMB}:flags=area,format=gray"


def tap_output(target: str) -> list[str]:
    """FFmpeg output arguments (after the ``-map``) that write a `tap_filter` 's thumbnails as
    raw bytes to ``target`` (``pipe:1`` or a ``file:`` URL), on the input's own clock (as in
    ``verify.decode_command``: no frame re-timing)."""
    return ["-fps_mode", "passthrough", "-enc_time_base:v", "demux", "-f", "rawvideo", target]


def tap_args(times: Sequence[float]) -> list[str]:
    """FFmpeg output arguments that write, to stdout, the `tap_filter` thumbnails of the first
    video stream at ``times``.

    Meant as the video output of a decode (see ``verify.decode_command``).
    """
    return ["-map", "0:v:0", "-vf", tap_filter(times), *tap_output("pipe:1")]


def thumbnails(raw: bytes) -> list[Image.Image]:
    """Split a tap's stdout into its grey thumbnails (a trailing partial one is dropped)."""
    size = THUMB * THUMB
    return [
        Image.fromarray(np.frombuffer(raw, np.uint8, size, i).reshape(THUMB, THUMB))
        for i in range(0, len(raw) - size + 1, size)
    ]


def source_command(ffmpeg: str, path: Path | str, times: Sequence[float]) -> list[str]:
    """The FFmpeg argument list that writes the source's thumbnails at ``times`` to stdout.

    The source is decoded as the render decodes it (upright, timestamps from 0) and only up to
    just past the last time.
    """
    stop = max(times) + 1.0
    return [
        ffmpeg, "-hide_banner", "-nostdin", "-v", "error",
        "-t", f"{stop:.3f}",
        "-i", "file:" + os.fspath(path),
        *tap_args(times),
    ]


async def sample_source(ffmpeg: str, path: Path | str, times: Sequence[float]) -> list[Image.Image]:
    """The source's thumbnails at content ``times``. Raises ``SamplingFailed``."""
    done = await run_child(source_command(ffmpeg, path, times))
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip()[-300:]
        raise SamplingFailed(f"could not take thumbnails from the source: {tail}")
    return thumbnails(done.stdout)


# -- hashing and distances ------------------------------------------------------------------------


def frame_hashes(images: Sequence[Image.Image]) -> list[FrameHashes]:
    """pHash of each image under each of the 8 dihedral transforms (identity first)."""
    return [
        tuple(imagehash.phash(im if tr is None else im.transpose(tr)) for tr in _TRANSPOSES)
        for im in images
    ]


def hash_distance(a: Sequence[FrameHashes], b: Sequence[FrameHashes]) -> float | None:
    """Median Hamming distance over matching frames, minimised over the dihedral transforms.

    One transform is chosen for the whole clip (a mirrored video is mirrored in every frame),
    tried on either side, so the result is symmetric. ``None`` when no frames match up.
    """
    n = min(len(a), len(b))
    if n == 0:
        return None
    best = min(
        min(
            statistics.median(x[k][0] - y[k][t] for k in range(n))
            for t in range(len(_TRANSPOSES))
        )
        for x, y in ((a, b), (b, a))
    )
    return float(best)


@dataclass(frozen=True)
class DistanceTable:
    """Distances of N variations to their source and to each other."""

    source: tuple[float | None, ...]
    siblings: tuple[tuple[float | None, ...], ...]  # symmetric; None on the diagonal

    @classmethod
    def measure(cls, source: Sequence[FrameHashes],
                variations: Sequence[Sequence[FrameHashes]]) -> DistanceTable:
        n = len(variations)
        sib: list[list[float | None]] = [[None] * n for _ in range(n)]
        for i in range(n):
            for j in range(i + 1, n):
                sib[i][j] = sib[j][i] = hash_distance(variations[i], variations[j])
        return cls(
            source=tuple(hash_distance(source, v) for v in variations),
            siblings=tuple(tuple(row) for row in sib),
        )

    def replaced(self, i: int, source: Sequence[FrameHashes],
                 variations: Sequence[Sequence[FrameHashes]]) -> DistanceTable:
        """The table once variation ``i`` is replaced by ``variations[i]`` (only its row and
        column are measured again)."""
        sib = [list(row) for row in self.siblings]
        for j in range(len(variations)):
            if j != i:
                sib[i][j] = sib[j][i] = hash_distance(variations[i], variations[j])
        src = list(self.source)
        src[i] = hash_distance(source, variations[i])
        return DistanceTable(source=tuple(src), siblings=tuple(tuple(row) for row in sib))

    def sibling_distances(self, i: int) -> list[float]:
        return [d for j, d in enumerate(self.siblings[i]) if j != i and d is not None]

    def report(self, i: int, rerolls: int = 0) -> dict:
        """The ``distance`` record of variation ``i`` (stored per output, in the manifest and
        the job API): distance to the source, nearest and median sibling, re-rolls taken."""
        sibs = self.sibling_distances(i)
        return {
            "source": _num(self.source[i]),
            "siblingsMin": _num(min(sibs)) if sibs else None,
            "siblingsMedian": _num(statistics.median(sibs)) if sibs else None,
            "rerolls": rerolls,
        }

    def too_close(self, min_distance: float) -> list[int]:
        """The variations to re-roll, in index order: each one closer than ``min_distance`` to
        the source, and of each pair of siblings closer than that, the later one (re-rolling one
        of the two separates them; keeping the earlier keeps the order of the names stable).
        Unmeasured distances (``None``) never trigger a re-roll.
        """
        if min_distance <= 0:
            return []
        picked: set[int] = {
            i for i, d in enumerate(self.source) if d is not None and d < min_distance
        }
        n = len(self.source)
        for i in range(n):
            for j in range(i + 1, n):
                d = self.siblings[i][j]
                if d is not None and d < min_distance and i not in picked and j not in picked:
                    picked.add(j)
        return sorted(picked)

    def score(self, i: int) -> float:
        """How distinct variation ``i`` is: its smallest distance to the source or a sibling
        (``inf`` when nothing was measured)."""
        values = [d for d in (self.source[i], *self.sibling_distances(i)) if d is not None]
        return min(values, default=float("inf"))


def _num(value: float | None) -> float | int | None:
    # Medians of an odd number of even values are whole; keep the JSON tidy.
    if value is None:
        return None
    return int(value) if float(value).is_integer() else round(value, 1)
