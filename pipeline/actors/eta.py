"""Queue positions and time estimates, from the throughput measured on this machine. Pure.

A finished render says how fast this machine renders a source of its size: ``source seconds ×
variations / wall seconds``. The estimate for a video is its own ``duration × variations``
divided by the median rate of the latest renders of the same size class; a size class without
measurements borrows the nearest one's, scaled by the pixel count (the work grows with it). With
no finished render at all there is no estimate (``None``): the API says so rather than guess.

``plan`` then plays the queue forward on ``workers`` slots: the running renders first (what is
left of each: its estimate less the time it has run, or, once it is a tenth of the way, the
time so far scaled by its progress), then the queued videos in order, each taking the first
slot to free up.
"""

from __future__ import annotations

import heapq
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pipeline.state.rows import Throughput

# The size classes: the shorter side of the picture, rounded up to one of these.
SIZE_CLASSES = (240, 360, 480, 576, 720, 1080, 1440, 2160, 4320)
# Renders per size class that the median is taken over (the latest ones).
RECENT = 10


def size_class(width: int, height: int) -> int:
    short = min(width, height)
    return next((c for c in SIZE_CLASSES if short <= c), SIZE_CLASSES[-1])


@dataclass(frozen=True)
class Rates:
    """Measured rates (source seconds × variations per wall second) by size class."""

    by_class: dict[int, float]

    @classmethod
    def measure(cls, samples: Iterable[Throughput]) -> Rates:
        """``samples`` newest first (``Store.throughput_samples``)."""
        seen: dict[int, list[float]] = {}
        for s in samples:
            rates = seen.setdefault(size_class(s.width, s.height), [])
            if len(rates) < RECENT and s.seconds > 0:
                rates.append(s.duration * s.variations / s.seconds)
        return cls({c: statistics.median(r) for c, r in seen.items() if r})

    def render_seconds(self, width: int, height: int, duration: float | None,
                       variations: int) -> float | None:
        """How long a render of this source should take here; None without measurements."""
        if not self.by_class or not duration or duration <= 0:
            return None
        wanted = size_class(width, height)
        near = min(self.by_class, key=lambda c: (abs(SIZE_CLASSES.index(c)
                                                    - SIZE_CLASSES.index(wanted)), c))
        rate = self.by_class[near] * (near / wanted) ** 2
        return duration * variations / rate


@dataclass(frozen=True)
class Pending:
    """A video still to render, as the plan sees it."""

    video_id: str
    estimate: float | None  # ``Rates.render_seconds``
    progress: float = 0.0  # percent, while running
    elapsed: float = 0.0  # seconds it has run


@dataclass(frozen=True)
class Estimate:
    position: int | None  # place in line, 1 = next; None while running
    starts_in: float | None  # seconds until it starts (0 while running); None: unknown
    eta: float | None  # seconds until it is done; None: unknown


def remaining(p: Pending) -> float | None:
    """What is left of a running render."""
    if p.progress >= 10 and p.elapsed > 0:
        return p.elapsed * (100 - min(p.progress, 100)) / p.progress
    if p.estimate is None:
        return None
    return max(p.estimate - p.elapsed, 0.0)


def plan(running: Sequence[Pending], queued: Sequence[Pending], workers: int,
         paused: bool = False) -> dict[str, Estimate]:
    """Every pending video's place and estimate, by video id. While paused nothing new starts,
    so the queued videos have places but no times."""
    out: dict[str, Estimate] = {}
    slots: list[float] = []
    known = True
    for p in running:
        left = remaining(p)
        out[p.video_id] = Estimate(None, 0.0, None if left is None else round(left, 1))
        known = known and left is not None
        slots.append(left or 0.0)
    slots += [0.0] * max(workers - len(slots), 0)
    heapq.heapify(slots)
    for position, p in enumerate(queued, start=1):
        known = known and not paused and p.estimate is not None
        if not known:
            out[p.video_id] = Estimate(position, None, None)
            continue
        start = heapq.heappop(slots)
        end = start + p.estimate
        heapq.heappush(slots, end)
        out[p.video_id] = Estimate(position, round(start, 1), round(end, 1))
    return out
