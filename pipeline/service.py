"""The service: shared parts (settings, store, hub) and the actors' root nursery.

``Service.run`` opens the actors (intake, scheduler with its runners, janitor, and the webhook
notifier when one is configured) in one nursery
and calls ``task_status.started()`` once they accept work. Cancelling the surrounding scope
is the shutdown: runners stop FFmpeg and mark their videos ``interrupted``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from pipeline.actors.intake import IntakeAccepted, IntakeRejected, IntakeRequest, intake_actor
from pipeline.actors.janitor import Janitor
from pipeline.actors.scheduler import (
    CancelJob,
    Drain,
    Pause,
    QueueView,
    Resume,
    RetryVideo,
    Scheduler,
    SchedulerMessage,
)
from pipeline.config import Settings
from pipeline.media.ffmpeg import find_ffmpeg
from pipeline.state.ledger import Ledger
from pipeline.state.lock import DataDirLock
from pipeline.state.progress import ProgressHub
from pipeline.state.rows import Job
from pipeline.state.store import AsyncStore, Store

if TYPE_CHECKING:
    from pipeline.actors.notifier import Notifier

log = logging.getLogger("video_refresher")


@dataclass(frozen=True)
class ServiceStatistics:
    ffmpeg_runs: int
    ffmpeg_seconds: float


@dataclass
class Service:
    settings: Settings
    clock: Callable[[], float] = time.time
    log: logging.Logger = field(default=log)
    # The API's JSON of a job (``web.views.job_json``): given by the web layer, it turns on the
    # webhooks when ``VR_WEBHOOK_URL`` is set (their bodies are that JSON).
    render_job: Callable[[Job], dict] | None = None

    def __post_init__(self) -> None:
        for d in (self.settings.data_dir, self.settings.uploads_dir, self.settings.outputs_dir,
                  self.settings.resumable_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.ffmpeg = find_ffmpeg(self.settings.ffmpeg)
        # Before the folder's database is opened and its leftovers are recovered (the
        # scheduler's start-up would stop a live service's FFmpeg). Raises DataDirInUse.
        self.lock = DataDirLock(self.settings.data_dir)
        if not self.lock.held:
            self.log.warning("data folder not locked: run only one service on it",
                             extra={"dataDir": str(self.settings.data_dir),
                                    "why": self.lock.unlocked_because})
        try:
            self.store = AsyncStore(Store(self.settings.db_path))
        except BaseException:
            self.lock.release()
            raise
        self.hub = ProgressHub()
        # Set when the server begins to shut down: requests that wait (``?wait=``) answer then.
        self.stopping = trio.Event()
        # The one writer of job and video state (pipeline/state/ledger.py).
        self.ledger = Ledger(self.store, self.hub, clock=self.clock, job_ttl=self.settings.job_ttl,
                             logger=self.log)
        self.scheduler = Scheduler(self)
        self.janitor = Janitor(self)
        self.notifier: Notifier | None = None
        if self.settings.webhook_url and self.settings.webhook_secret and self.render_job:
            # Imported here: its HTTP client (httpx) took 40 ms of the 0.3 s start-up of `make`.
            from pipeline.actors.notifier import Notifier

            self.notifier = Notifier(self.store, url=self.settings.webhook_url,
                                     secret=self.settings.webhook_secret,
                                     render_job=self.render_job, clock=self.clock, log=self.log)
            self.ledger.webhooks = True
            self.ledger.delivery_owed = self.notifier.wake
        self.scheduler_send, self._scheduler_recv = \
            trio.open_memory_channel[SchedulerMessage](64)
        self.intake_send, self._intake_recv = trio.open_memory_channel[IntakeRequest](16)
        self._ffmpeg_runs = 0
        self._ffmpeg_seconds = 0.0

    # -- statistics (for /metrics) --------------------------------------------------------

    def ffmpeg_finished(self, seconds: float) -> None:
        """Runner hook: one FFmpeg process ended after ``seconds`` of wall-clock time."""
        self._ffmpeg_runs += 1
        self._ffmpeg_seconds += max(0.0, seconds)

    def statistics(self) -> ServiceStatistics:
        return ServiceStatistics(ffmpeg_runs=self._ffmpeg_runs, ffmpeg_seconds=self._ffmpeg_seconds)

    # -- requests -------------------------------------------------------------------------

    async def submit(self, request_args: dict) -> IntakeAccepted | IntakeRejected:
        """Hand an upload to intake and wait for its answer.

        The wait is shielded: once intake has the files, its answer decides who owns them, so a
        client disconnect must not abandon the request half-way.
        """
        send, recv = trio.open_memory_channel[IntakeAccepted | IntakeRejected](1)
        req = IntakeRequest(reply=send, **request_args)
        with trio.CancelScope(shield=True):
            await self.intake_send.send(req)
            async with recv:
                return await recv.receive()

    async def cancel_job(self, job_id: str) -> None:
        """Stop the job's renders and drop its queued videos; returns once they stopped."""
        self.log.info("job cancel requested", extra={"jobId": job_id})
        await self._ask(lambda reply: CancelJob(job_id, reply))

    async def cancel_video(self, job_id: str, video_id: str) -> None:
        """Stop one video's render, or take it out of the queue; returns once it stopped."""
        self.log.info("video cancel requested", extra={"jobId": job_id, "videoId": video_id})
        await self._ask(lambda reply: CancelJob(job_id, reply, video_id))

    async def retry(self, job_id: str, video_id: str) -> bool:
        """Queue a finished-without-success video again; False if a concurrent change made that
        impossible (it is queued again already)."""
        return await self._ask(lambda reply: RetryVideo(job_id, video_id, reply))

    async def pause_queue(self) -> None:
        """Start no more renders (the running ones finish); kept across restarts."""
        await self._ask(Pause)

    async def resume_queue(self) -> None:
        await self._ask(Resume)

    async def queue_view(self) -> QueueView:
        """Places in line and time estimates of the pending videos (``Scheduler.view``)."""
        return await self.scheduler.view()

    async def wait_idle(self) -> None:
        """Return once nothing is queued or rendering."""
        await self._ask(Drain)

    async def _ask(self, message: Callable[[trio.MemorySendChannel], SchedulerMessage]) -> bool:
        """Send the scheduler a message with a one-shot reply channel and wait for the answer;
        an exception the scheduler met handling it is raised here."""
        send, recv = trio.open_memory_channel[bool | Exception](1)
        await self.scheduler_send.send(message(send))
        async with recv:
            answer = await recv.receive()
        if isinstance(answer, Exception):
            raise answer
        return answer

    # -- lifetime -------------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(intake_actor, self, self._intake_recv)
            await nursery.start(self.scheduler.run, self._scheduler_recv)
            # After the scheduler's recovery, so leftover *.part files are already gone.
            await nursery.start(self.janitor.run)
            if self.notifier is not None:
                await nursery.start(self.notifier.run)
            task_status.started()

    def close(self) -> None:
        self.store.sync.close()
        self.lock.release()
