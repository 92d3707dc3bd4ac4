"""Progress hub: fans job/video events (``pipeline/state/events.py``) out to subscribers without ever
blocking the pipeline.

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

from pipeline.state.events import Event, JobChanged, JobDeleted, Progress, VideoChanged
from pipeline.state.states import JOB_TERMINAL

# At most this many progress ticks per second per video reach subscribers.
TICKS_PER_SECOND = 4.0


class SubscriberLagging(Exception):
    """The subscriber fell so far behind that state events would have been lost."""


class Subscriber:
    def __init__(self, job_id: str | None = None, max_events: int = 256):
        self.job_id = job_id
        self._max = max_events
        self._events: deque[Event] = deque()
        self._ticks: dict[str, Progress] = {}
        self._wakeup = trio.Event()
        self.lagging = False
        self.dropped_ticks = 0

    def subscribe(self, job_id: str | None) -> None:
        """Only receive events of ``job_id`` from now on (None: all jobs)."""
        self.job_id = job_id
        self._ticks = {k: v for k, v in self._ticks.items() if job_id in (None, v.job_id)}
        self._events = deque(e for e in self._events if job_id in (None, e.job_id))

    def push(self, event: Event) -> None:
        if self.job_id is not None and event.job_id != self.job_id:
            return
        if isinstance(event, Progress):
            if event.video_id in self._ticks:
                self.dropped_ticks += 1
            self._ticks[event.video_id] = event
        else:
            # A state event supersedes any tick not yet sent for that video.
            if isinstance(event, VideoChanged):
                self._ticks.pop(event.video_id, None)
            if len(self._events) >= self._max:
                self.lagging = True
            else:
                self._events.append(event)
        self._wakeup.set()

    async def receive(self) -> Event:
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


async def until_finished(sub: Subscriber) -> None:
    """Return once ``sub`` receives the end of a job: a terminal job status, or its deletion;
    also when it lags (events were lost: the caller reads the job again either way)."""
    while True:
        try:
            event = await sub.receive()
        except SubscriberLagging:
            return
        if isinstance(event, JobDeleted):
            return
        if isinstance(event, JobChanged) and event.status in JOB_TERMINAL:
            return
        if isinstance(event, VideoChanged) and event.job_status in JOB_TERMINAL:
            return


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

    def publish(self, event: Event) -> None:
        """Send a state event to every subscriber. Never blocks."""
        if isinstance(event, VideoChanged):
            self._last_tick.pop(event.video_id, None)
        self._send(event)

    def publish_progress(self, tick: Progress) -> bool:
        """Send a progress tick, throttled per video. Returns whether it was sent."""
        now = self._clock()
        last = self._last_tick.get(tick.video_id)
        if last is not None and now - last < 1.0 / TICKS_PER_SECOND:
            return False
        self._last_tick[tick.video_id] = now
        self._send(tick)
        return True

    def _send(self, event: Event) -> None:
        self._published += 1
        for sub in list(self._subs):
            sub.push(event)

    def statistics(self) -> HubStatistics:
        return HubStatistics(subscribers=len(self._subs), published=self._published)
