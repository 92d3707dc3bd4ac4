"""Progress hub: fans job/video events out to subscribers without ever blocking the pipeline.

Each subscriber has a bounded queue of state events plus a "latest tick per video" slot, so a
slow client gets merged progress (intermediate ticks are replaced, never queued) while state
changes are kept in order. A subscriber whose state queue overflows is marked lagging and its
``receive`` raises ``SubscriberLagging``; the WebSocket closes it and the client re-syncs from the
status endpoint. Publishing is synchronous and never waits.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import trio

# At most this many progress ticks per second per video reach subscribers.
TICKS_PER_SECOND = 4.0


class SubscriberLagging(Exception):
    """The subscriber fell so far behind that state events would have been lost."""


class Subscriber:
    def __init__(self, job_id: str | None = None, max_events: int = 256):
        self.job_id = job_id
        self._max = max_events
        self._events: deque[dict] = deque()
        self._ticks: dict[str, dict] = {}
        self._wakeup = trio.Event()
        self.lagging = False
        self.dropped_ticks = 0

    def subscribe(self, job_id: str | None) -> None:
        """Only receive events of ``job_id`` from now on (None: all jobs)."""
        self.job_id = job_id
        self._ticks = {k: v for k, v in self._ticks.items() if job_id in (None, v.get("jobId"))}
        self._events = deque(e for e in self._events if job_id in (None, e.get("jobId")))

    def push(self, event: dict) -> None:
        if self.job_id is not None and event.get("jobId") != self.job_id:
            return
        vid = event.get("videoId")
        if event["type"] == "progress":
            if vid in self._ticks:
                self.dropped_ticks += 1
            self._ticks[vid] = event
        else:
            # A state event supersedes any tick not yet sent for that video.
            if vid is not None:
                self._ticks.pop(vid, None)
            if len(self._events) >= self._max:
                self.lagging = True
            else:
                self._events.append(event)
        self._wakeup.set()

    async def receive(self) -> dict:
        while True:
            if self._events:
                return self._events.popleft()
            if self.lagging:
                raise SubscriberLagging()
            if self._ticks:
                key = next(iter(self._ticks))
                return self._ticks.pop(key)
            self._wakeup = trio.Event()
            await self._wakeup.wait()


@dataclass(frozen=True)
class HubStatistics:
    subscribers: int
    published: int


class ProgressHub:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._subs: set[Subscriber] = set()
        self._last_tick: dict[str, float] = {}
        self._clock = clock
        self._published = 0

    @contextmanager
    def subscribe(self, job_id: str | None = None, max_events: int = 256) -> Iterator[Subscriber]:
        sub = Subscriber(job_id, max_events)
        self._subs.add(sub)
        try:
            yield sub
        finally:
            self._subs.discard(sub)

    def publish(self, event: dict) -> None:
        """Send a state event (``type`` job or video) to every subscriber. Never blocks."""
        if event.get("type") == "video" and event.get("videoId"):
            self._last_tick.pop(event["videoId"], None)
        self._published += 1
        for sub in list(self._subs):
            sub.push(event)

    def publish_progress(self, job_id: str, video_id: str, progress: float) -> bool:
        """Send a progress tick, throttled per video. Returns whether it was sent."""
        now = self._clock()
        last = self._last_tick.get(video_id)
        if last is not None and now - last < 1.0 / TICKS_PER_SECOND:
            return False
        self._last_tick[video_id] = now
        self.publish_tick({"type": "progress", "jobId": job_id, "videoId": video_id,
                           "progress": round(progress, 1)})
        return True

    def publish_tick(self, event: dict) -> None:
        self._published += 1
        for sub in list(self._subs):
            sub.push(event)

    def statistics(self) -> HubStatistics:
        return HubStatistics(subscribers=len(self._subs), published=self._published)
