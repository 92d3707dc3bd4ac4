"""Scheduler actor: FIFO across jobs, at most ``VR_WORKERS`` FFmpeg processes at once.

Messages (frozen dataclasses, one base ``SchedulerMessage``) arrive on one bounded channel:
- ``VideoQueued``: a video is ready to render (from intake or recovery);
- ``RetryVideo``: queue a failed, interrupted or cancelled video again (its state through the
  ledger), answering ``True``, or ``False`` when a concurrent change made that illegal;
- ``CancelJob``: stop a job's running renders and drop its queued videos; the answer comes once
  its renders have stopped, without holding up other messages meanwhile;
- ``Drain``: answer when nothing is queued or running (used by ``make``);
- ``Pause`` / ``Resume``: stop starting renders (the running ones finish) or start again; the
  pause is kept in the store, so it holds across a restart.
Answers travel on the one-shot channel the message carries. ``view`` gives each pending video's
place in line and time estimate (``pipeline/actors/eta.py``) from the renders measured here.

On start it recovers: leftover FFmpeg processes recorded in the store are killed (only when
``/proc/<pid>/cmdline`` shows FFmpeg), ``*.part`` files are removed, and videos left
``queued``/``processing``/``interrupted`` are queued again when their upload still exists, else
failed (not retryable).
"""

from __future__ import annotations

import errno
import sqlite3
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from pipeline.actors.eta import Estimate, Pending, Rates, plan
from pipeline.actors.runner import RenderHandle, kill_orphan, render_video
from pipeline.context import SchedulerContext
from pipeline.state.states import IllegalTransition, VideoStatus


@dataclass(frozen=True)
class SchedulerMessage:
    """Base of everything the scheduler receives."""


@dataclass(frozen=True)
class VideoQueued(SchedulerMessage):
    job_id: str
    video_id: str


@dataclass(frozen=True)
class RetryVideo(SchedulerMessage):
    job_id: str
    video_id: str
    reply: trio.MemorySendChannel[bool] = field(compare=False, repr=False)


@dataclass(frozen=True)
class CancelJob(SchedulerMessage):
    """Cancel the job's queued and running videos, or only ``video_id``'s."""

    job_id: str
    reply: trio.MemorySendChannel[bool] | None = field(default=None, compare=False, repr=False)
    video_id: str | None = None


@dataclass(frozen=True)
class Drain(SchedulerMessage):
    reply: trio.MemorySendChannel[bool] = field(compare=False, repr=False)


@dataclass(frozen=True)
class Pause(SchedulerMessage):
    reply: trio.MemorySendChannel[bool] = field(compare=False, repr=False)


@dataclass(frozen=True)
class Resume(SchedulerMessage):
    reply: trio.MemorySendChannel[bool] = field(compare=False, repr=False)


PAUSED_FLAG = "queue_paused"


@dataclass(frozen=True)
class SchedulerStatistics:
    queued: int
    running: int
    workers: int
    paused: bool = False


@dataclass(frozen=True)
class QueueView:
    """The queue as it stands: counts, and each pending video's ``eta.Estimate`` by id."""

    paused: bool
    queued: int
    running: int
    workers: int
    estimates: dict[str, Estimate]

    def job_eta(self, video_ids: list[str]) -> float | None:
        """Seconds until the last of these videos is done: None if any pending one has no
        estimate, or none is pending."""
        pending = [self.estimates[v] for v in video_ids if v in self.estimates]
        if not pending or any(e.eta is None for e in pending):
            return None
        return max(e.eta for e in pending)


class Scheduler:
    def __init__(self, service: SchedulerContext):
        self.service = service
        self.queue: deque[VideoQueued] = deque()
        self.running: dict[str, RenderHandle] = {}
        self._drain_waiters: list[trio.MemorySendChannel[bool]] = []
        # Cancel answers owed once the renders have stopped, by (job id, video id or None).
        self._cancel_waiters: dict[tuple[str, str | None],
                                   list[trio.MemorySendChannel[bool]]] = {}
        self._changed = trio.Event()
        self.paused = False
        self._rates: Rates | None = None  # measured throughput; None: to be read again

    def statistics(self) -> SchedulerStatistics:
        return SchedulerStatistics(
            queued=len(self.queue), running=len(self.running),
            workers=self.service.settings.workers, paused=self.paused,
        )

    async def view(self) -> QueueView:
        """Places in line and estimates of every queued and running video."""
        queued = [m.video_id for m in self.queue]
        running = list(self.running)
        store = self.service.store
        if self._rates is None:
            self._rates = Rates.measure(await store.throughput_samples())
        rates, now = self._rates, self.service.ledger.clock()
        work = {v.id: (v, n) for v, n in await store.pending_work()}

        def pending(video_id: str) -> Pending:
            if video_id not in work:  # finished meanwhile
                return Pending(video_id, 0.0, 100.0)
            v, variations = work[video_id]
            estimate = rates.render_seconds(v.info.get("width") or 0, v.info.get("height") or 0,
                                            v.duration, variations)
            elapsed = max(now - v.started_at, 0.0) if v.started_at else 0.0
            return Pending(video_id, estimate, v.progress, elapsed)

        estimates = plan([pending(v) for v in running], [pending(v) for v in queued],
                         self.service.settings.workers, self.paused)
        return QueueView(self.paused, len(queued), len(running), self.service.settings.workers,
                         estimates)

    async def recover(self) -> None:
        service = self.service
        store = service.store
        self.paused = await store.flag(PAUSED_FLAG) == "1"
        for video_id, pid in await store.recorded_pids():
            if await trio.to_thread.run_sync(kill_orphan, pid):
                service.log.warning("killed leftover FFmpeg", extra={"videoId": video_id, "pid": pid})
            await store.set_video_pid(video_id, None)
        await trio.to_thread.run_sync(_remove_parts, service.settings.outputs_dir)
        for v in await store.pending_videos():
            upload = v.upload_path
            if upload and Path(upload).exists():
                if v.status != VideoStatus.QUEUED:
                    await service.ledger.requeued(v.id)
                self.queue.append(VideoQueued(v.job_id, v.id))
            else:
                await service.ledger.failed(
                    v.id, "the service stopped and the uploaded file is gone", retryable=False)

    async def run(self, receive: trio.MemoryReceiveChannel[SchedulerMessage], *,
                  task_status=trio.TASK_STATUS_IGNORED) -> None:
        await self.recover()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._dispatch, nursery)
            task_status.started()
            async with receive:
                async for msg in receive:
                    try:
                        await self._handle(msg)
                    except Exception as exc:  # a store error (a full disk) must not stop us
                        self.service.log.exception("scheduler message failed",
                                                   extra={"request": type(msg).__name__})
                        reply = getattr(msg, "reply", None)
                        if reply is not None:
                            _answer(reply, exc)  # raised again for the asker
                    self._notify()
            nursery.cancel_scope.cancel()

    async def _handle(self, msg: SchedulerMessage) -> None:
        match msg:
            case VideoQueued():
                self._enqueue(msg)
            case RetryVideo(job_id=job_id, video_id=video_id, reply=reply):
                try:
                    await self.service.ledger.requeued(video_id)
                except IllegalTransition:  # a second retry overtook this one
                    _answer(reply, False)
                else:
                    self._enqueue(VideoQueued(job_id, video_id))
                    _answer(reply, True)
            case CancelJob(job_id=job_id, reply=reply, video_id=video_id):
                def hit(j: str, v: str) -> bool:
                    return j == job_id and video_id in (None, v)

                dropped = [m for m in self.queue if hit(m.job_id, m.video_id)]
                for m in dropped:
                    self.queue.remove(m)
                for m in dropped:
                    await _settle(self.service.ledger.cancelled(m.video_id))
                for h in list(self.running.values()):
                    if hit(h.job_id, h.video_id):
                        h.reason = "cancel"
                        h.cancel_scope.cancel()
                # Answered once those renders have stopped (``_notify``), so the caller sees a
                # settled job; other messages go on meanwhile.
                if reply is not None:
                    self._cancel_waiters.setdefault((job_id, video_id), []).append(reply)
            case Drain(reply=reply):
                self._drain_waiters.append(reply)
            case Pause(reply=reply) | Resume(reply=reply):
                paused, was = isinstance(msg, Pause), self.paused
                # Before the write: a render ending meanwhile must not start the next one.
                self.paused = paused
                try:
                    await self.service.store.set_flag(PAUSED_FLAG, "1" if paused else None)
                except BaseException:
                    self.paused = was
                    raise
                if paused != was:
                    self.service.log.info("queue paused" if paused else "queue resumed",
                                          extra={"queued": len(self.queue)})
                _answer(reply, True)
            case _:
                raise TypeError(f"unknown scheduler message {msg!r}")

    def _enqueue(self, msg: VideoQueued) -> None:
        if msg.video_id not in self.running and msg not in self.queue:
            self.queue.append(msg)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
        busy = {(h.job_id, v) for h in self.running.values() for v in (None, h.video_id)}
        for key in [k for k in self._cancel_waiters if k not in busy]:
            for w in self._cancel_waiters.pop(key):
                _answer(w, True)
        if not self.queue and not self.running:
            for w in self._drain_waiters:
                _answer(w, True)
            self._drain_waiters.clear()

    async def _wait_changed(self) -> None:
        await self._changed.wait()

    async def _dispatch(self, nursery: trio.Nursery) -> None:
        while True:
            while (not self.paused and self.queue
                   and len(self.running) < self.service.settings.workers):
                msg = self.queue.popleft()
                handle = RenderHandle(msg.job_id, msg.video_id, trio.CancelScope())
                self.running[msg.video_id] = handle
                nursery.start_soon(self._run_one, handle)
            await self._wait_changed()

    async def _run_one(self, handle: RenderHandle) -> None:
        try:
            await render_video(self.service, handle)
        except Exception as exc:
            self.service.log.exception("render crashed", extra={"videoId": handle.video_id})
            error = ("the server's disk is full; retry once there is room" if is_disk_full(exc)
                     else "internal error while rendering")
            with trio.CancelScope(shield=True):
                await _settle(self.service.ledger.failed(handle.video_id, error, retryable=True))
        finally:
            self.running.pop(handle.video_id, None)
            self._rates = None  # one more render measured
            self._notify()


def _answer(reply: trio.MemorySendChannel, value: object) -> None:
    """Answer on a one-shot channel whose asker may have gone (cancelled while waiting). An
    exception as the answer is raised again for the asker (``Service._ask``)."""
    try:
        reply.send_nowait(value)
    except (trio.BrokenResourceError, trio.ClosedResourceError, trio.WouldBlock):
        pass


async def _settle(transition: Awaitable[object]) -> None:
    """Apply a ledger transition that a race may have overtaken (the video finished, or was
    cancelled, meanwhile): the state it reached stands."""
    try:
        await transition
    except IllegalTransition:
        pass


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the disk is full: a write's ENOSPC/EDQUOT, or
    SQLite's "database or disk is full"."""
    for _ in range(8):  # a chain is short; never follow a cycle
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
        if exc is None:
            break
    return False


def _remove_parts(root: Path) -> None:
    if not root.exists():
        return
    for p in root.rglob("*.part"):
        try:
            p.unlink()
        except FileNotFoundError:
            pass
