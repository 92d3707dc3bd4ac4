"""Tapped frames hashed while the render is still writing them.

A render taps 12–16 RGB frames of the source and of every output (``distinct.Taps``) at content
moments spread over the whole clip, so most of them are on disk long before FFmpeg ends. PDQ
hashing them (8 dihedral transforms a frame, about 1 ms each at ``TAP_WIDTH``) holds the GIL,
and done after the render it was the largest part of a video's fixed cost: on a 2.5 s render of
five 720×528 variations, 0.14 s of the 0.19 s between FFmpeg's exit and the commit. FFmpeg
keeps about 1.7 of 2 cores busy over a render, so hashing the frames as they land
(`follow`) costs the render nothing measurable, and after it only the last frame or two of each
tap and the contact strips are left (`TapDigest.finish`).

Reading a tap file while FFmpeg appends to it is safe: only whole frames are read (a frame that
is still being written is left for the next call), and a file that does not exist yet holds no
frames. What a tap finally holds is judged by the caller, as before: fewer frames than its times
ask for means the tap was cut short, and the frames are sampled from the file instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trio

from pipeline.media import distinct, preview
from pipeline.media.distinct import FrameHash, Taps

# Seconds between two looks at the tap files while FFmpeg runs.
FOLLOW_INTERVAL = 0.25


@dataclass(frozen=True)
class Digest:
    """A tap's frames as the checks use them: how many there were, each one's PDQ hashes, and
    the contact strip of `preview.pick` of them (``None`` without frames)."""

    frames: int
    hashes: tuple[FrameHash, ...]
    strip: bytes | None


@dataclass
class TapDigest:
    """One tap file: the frames hashed so far and where the next one starts."""

    path: Path
    size: tuple[int, int]
    offset: int = 0
    hashes: list[FrameHash] = field(default_factory=list)

    @property
    def frame_bytes(self) -> int:
        w, h = self.size
        return w * h * 3

    def advance(self) -> int:
        """Hash the whole frames written since the last call; returns how many. Blocking."""
        n = self.frame_bytes
        try:
            with open(self.path, "rb") as fh:
                whole = (os.fstat(fh.fileno()).st_size - self.offset) // n
                if whole <= 0:
                    return 0
                fh.seek(self.offset)
                data = fh.read(whole * n)
        except FileNotFoundError:
            return 0
        frames = distinct.read_frames(data, self.size)
        self.hashes.extend(distinct.frame_hashes(frames))
        self.offset += len(frames) * n
        return len(frames)

    def finish(self) -> Digest:
        """The rest of the file hashed, and the contact strip made from the frames it picks
        (read again from the file: only the hashes are kept in memory). Blocking."""
        self.advance()
        count = len(self.hashes)
        picked = self._frames(preview.pick(count)) if count else []
        return Digest(count, tuple(self.hashes),
                      preview.contact_strip(picked) if picked else None)

    def _frames(self, indices: Sequence[int]) -> list[np.ndarray]:
        n = self.frame_bytes
        frames: list[np.ndarray] = []
        try:
            with open(self.path, "rb") as fh:
                for k in indices:
                    fh.seek(k * n)
                    frames.extend(distinct.read_frames(fh.read(n), self.size))
        except FileNotFoundError:
            return []
        return frames


class TapDigests:
    """Every tap file of one video's renders (first render and re-rolls) → its `TapDigest`."""

    def __init__(self) -> None:
        self._by_path: dict[Path, TapDigest] = {}

    def add(self, taps: Iterable[Taps]) -> list[TapDigest]:
        """Digests for every frame file of ``taps`` (the source's and the outputs'), new ones
        replacing any of an earlier render at the same path."""
        added = []
        for t in taps:
            for path in (*t.outputs, t.source):
                if path is not None:
                    self._by_path[path] = TapDigest(path, t.size)
                    added.append(self._by_path[path])
        return added

    def finish(self, path: Path | None, size: tuple[int, int]) -> Digest:
        """`TapDigest.finish` of the digest followed for ``path``, or of a fresh one that reads
        the file from its start; no frames for no path. Blocking."""
        if path is None:
            return Digest(0, (), None)
        known = self._by_path.get(path)
        digest = known if known is not None and known.size == size else TapDigest(path, size)
        return digest.finish()


async def follow(digests: Sequence[TapDigest], interval: float = FOLLOW_INTERVAL) -> None:
    """Advance ``digests`` every ``interval`` seconds until cancelled (when FFmpeg exits).

    The hashing runs in a worker thread; a cancellation waits for the batch in hand to end, so
    a digest is never left half-advanced."""
    while True:
        await trio.sleep(interval)
        await trio.to_thread.run_sync(_advance_all, digests)


def _advance_all(digests: Sequence[TapDigest]) -> None:
    for d in digests:
        d.advance()
