"""Scheduler actor: FIFO across jobs, at most ``VR_WORKERS`` FFmpeg processes at once.

Messages (frozen dataclasses, one base ``SchedulerMessage``) arrive on one bounded channel:
- ``VideoQueued``: a video is ready to render (from intake or recovery);
- ``RetryVideo``: queue a failed, interrupted or cancelled video again (its state through the
  ledger), answering ``True``, or ``False`` when a concurrent change made that illegal;
- ``CancelJob``: stop a job's running renders and drop its queued videos; the answer comes once
  its renders have stopped, without holding up other messages meanwhile;
- ``Drain``: answer when nothing is queued or running (used by ``make``).
Answers travel on the one-shot channel the message carries.

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
    job_id: str
    reply: trio.MemorySendChannel[bool] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Drain(SchedulerMessage):
    reply: trio.MemorySendChannel[bool] = field(compare=False, repr=False)


@dataclass(frozen=True)
class SchedulerStatistics:
    queued: int
    running: int
    workers: int


class Scheduler:
    def __init__(self, service: SchedulerContext):
        self.service = service
        self.queue: deque[VideoQueued] = deque()
        self.running: dict[str, RenderHandle] = {}
        self._drain_waiters: list[trio.MemorySendChannel[bool]] = []
        # Cancel answers owed once the job's renders have stopped, by job id.
        self._cancel_waiters: dict[str, list[trio.MemorySendChannel[bool]]] = {}
        self._changed = trio.Event()

    def statistics(self) -> SchedulerStatistics:
        return SchedulerStatistics(
            queued=len(self.queue), running=len(self.running),
            workers=self.service.settings.workers,
        )

    async def recover(self) -> None:
        service = self.service
        store = service.store
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
            case CancelJob(job_id=job_id, reply=reply):
                dropped = [m for m in self.queue if m.job_id == job_id]
                for m in dropped:
                    self.queue.remove(m)
                for m in dropped:
                    await _settle(self.service.ledger.cancelled(m.video_id))
                for h in list(self.running.values()):
                    if h.job_id == job_id:
                        h.reason = "cancel"
                        h.cancel_scope.cancel()
                # Answered once this job's renders have stopped (``_notify``), so the caller
                # sees a settled job; other messages go on meanwhile.
                if reply is not None:
                    self._cancel_waiters.setdefault(job_id, []).append(reply)
            case Drain(reply=reply):
                self._drain_waiters.append(reply)
            case _:
                raise TypeError(f"unknown scheduler message {msg!r}")

    def _enqueue(self, msg: VideoQueued) -> None:
        if msg.video_id not in self.running and msg not in self.queue:
            self.queue.append(msg)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
        busy = {h.job_id for h in self.running.values()}
        for job_id in [j for j in self._cancel_waiters if j not in busy]:
            for w in self._cancel_waiters.pop(job_id):
                _answer(w, True)
        if not self.queue and not self.running:
            for w in self._drain_waiters:
                _answer(w, True)
            self._drain_waiters.clear()

    async def _wait_changed(self) -> None:
        await self._changed.wait()

    async def _dispatch(self, nursery: trio.Nursery) -> None:
        while True:
            while self.queue and len(self.running) < self.service.settings.workers:
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
