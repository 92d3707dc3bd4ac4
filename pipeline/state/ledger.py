"""The ledger: the one owner of job and video state.

Every state change of a job or a video goes through one method here, named for the
transition (``job_queued``, ``started``, ``progressed``, ``finished``, ``failed``,
``cancelled``, ``interrupted``, ``requeued``, ``expired``, ``deleted``). Each writes the row in
one transaction, derives the job's status from its videos (``states.job_status_from_videos``),
publishes one frozen event (``pipeline/state/events.py``) and logs one line. No other module writes a
status column; actors hold the ledger, not the store and the hub.

Error handling: a transition from a state that does not allow it raises ``IllegalTransition``
and writes nothing (the allowed sources are ``_ALLOWED``). A video or job that no longer exists
(deleted meanwhile) is no error: the method returns None / False and publishes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from pipeline.state.events import JobChanged, JobDeleted, Progress, VideoChanged
from pipeline.state.progress import ProgressHub
from pipeline.state.rows import Output
from pipeline.state.states import JobStatus, VideoStatus
from pipeline.state.store import WEBHOOK_EVENTS, AsyncStore

V = VideoStatus
# The statuses each video transition may start from.
_ALLOWED: dict[VideoStatus, frozenset[VideoStatus]] = {
    # Picked up by a runner: queued (or interrupted, should a message outrun recovery).
    V.PROCESSING: frozenset({V.QUEUED, V.INTERRUPTED}),
    V.COMPLETED: frozenset({V.PROCESSING}),
    # Failed while rendering, or before it began (upload gone, left over at recovery).
    V.FAILED: frozenset({V.QUEUED, V.PROCESSING, V.INTERRUPTED}),
    V.CANCELLED: frozenset({V.QUEUED, V.PROCESSING}),
    V.INTERRUPTED: frozenset({V.PROCESSING}),
    # Retried, or resumed at start-up (processing when the last process was killed).
    V.QUEUED: frozenset({V.FAILED, V.CANCELLED, V.INTERRUPTED, V.PROCESSING}),
}
# Progress is written to SQLite at most this often per video (the hub gets more ticks).
DB_PROGRESS_INTERVAL = 1.0

log = logging.getLogger("video_refresher")


class Ledger:
    """Writes through ``store``, publishes to ``hub``; times from ``clock`` (wall clock,
    injectable); finished jobs expire ``job_ttl`` seconds after they finish."""

    def __init__(self, store: AsyncStore, hub: ProgressHub, *, clock: Callable[[], float],
                 job_ttl: float, logger: logging.Logger = log, webhooks: bool = False):
        self.store = store
        self.hub = hub
        self.clock = clock
        self.job_ttl = job_ttl
        self.log = logger
        # With webhooks on, a job's reaching completed/failed/cancelled also records a delivery
        # (in the same transaction) and calls ``delivery_owed`` (the notifier's wake-up).
        self.webhooks = webhooks
        self.delivery_owed: Callable[[], None] = lambda: None
        self._progress_written: dict[str, float] = {}

    # -- jobs -------------------------------------------------------------------------------

    async def job_queued(self, *, job_id: str, seed: str, variations: int, options: dict,
                         videos: list[dict], name: str | None = None) -> None:
        """A new job with its videos, all queued."""
        await self.store.create_job(job_id=job_id, seed=seed, variations=variations,
                                    options=options, videos=videos, now=self.clock(), name=name)
        self.hub.publish(JobChanged(job_id, JobStatus.QUEUED))
        self.log.info("job created", extra={
            "jobId": job_id, "videoIds": [v["id"] for v in videos], "variations": variations,
            "bytes": sum(v["size"] for v in videos),
        })

    async def expired(self, job_id: str, reason: str = "expired") -> bool:
        """A finished job's results are being deleted. False (nothing published) when the job
        is not finished (a retry re-queued it meanwhile) or gone."""
        if not await self.store.expire_job(job_id, self.clock()):
            return False
        self.hub.publish(JobChanged(job_id, JobStatus.EXPIRED))
        self.log.info("job expired", extra={"jobId": job_id, "reason": reason})
        return True

    async def deleted(self, job_id: str) -> bool:
        """The job's rows are removed (its files already are). False if it was unknown."""
        if not await self.store.delete_job(job_id):
            return False
        for video_id in [k for k in self._progress_written if k.startswith(job_id + "/")]:
            self._progress_written.pop(video_id, None)
        self.hub.publish(JobDeleted(job_id))
        self.log.info("job deleted", extra={"jobId": job_id})
        return True

    # -- videos -----------------------------------------------------------------------------

    async def started(self, video_id: str) -> VideoChanged | None:
        """A runner began rendering the video (one more attempt)."""
        return await self._video(video_id, V.PROCESSING, progress=0.0)

    async def progressed(self, job_id: str, video_id: str, percent: float) -> None:
        """A render advanced: a tick for subscribers (throttled by the hub), and the row at most
        every ``DB_PROGRESS_INTERVAL`` seconds."""
        self.hub.publish_progress(Progress(job_id, video_id, round(percent, 1)))
        now = trio.current_time()
        key = f"{job_id}/{video_id}"
        if now - self._progress_written.get(key, -1e9) >= DB_PROGRESS_INTERVAL:
            self._progress_written[key] = now
            await self.store.set_video_progress(video_id, percent, self.clock())

    async def finished(self, video_id: str, outputs: list[Output]) -> VideoChanged | None:
        """Every output is verified and in place: record them and complete the video."""
        return await self._video(video_id, V.COMPLETED, progress=100.0, outputs=outputs)

    async def failed(self, video_id: str, error: str, *, retryable: bool,
                     stderr_tail: str | None = None) -> VideoChanged | None:
        return await self._video(video_id, V.FAILED, error=error, retryable=retryable,
                                 stderr_tail=stderr_tail)

    async def cancelled(self, video_id: str) -> VideoChanged | None:
        return await self._video(video_id, V.CANCELLED, progress=0.0)

    async def interrupted(self, video_id: str) -> VideoChanged | None:
        """The service stopped during the render; it resumes on the next start."""
        return await self._video(video_id, V.INTERRUPTED, progress=0.0)

    async def requeued(self, video_id: str) -> VideoChanged | None:
        """Queued again: retried by the user, or resumed at start-up."""
        return await self._video(video_id, V.QUEUED, progress=0.0, retryable=True)

    async def _video(self, video_id: str, status: VideoStatus, *, progress: float | None = None,
                     error: str | None = None, retryable: bool | None = None,
                     stderr_tail: str | None = None,
                     outputs: list[Output] | None = None) -> VideoChanged | None:
        result = await self.store.set_video_state(
            video_id, status, now=self.clock(), progress=progress, error=error,
            stderr_tail=stderr_tail, retryable=retryable, job_ttl=self.job_ttl,
            allowed_from=_ALLOWED[status], outputs=outputs, notify=self.webhooks,
        )
        if result is None:
            return None
        job_id, job_status = result
        if self.webhooks and job_status in WEBHOOK_EVENTS:
            self.delivery_owed()
        self._progress_written.pop(f"{job_id}/{video_id}", None)
        event = VideoChanged(job_id, video_id, status, JobStatus(job_status), progress=progress,
                             error=error)
        self.hub.publish(event)
        # One log line per video state change (start, finish, failure, cancel, interruption).
        level = logging.WARNING if status == V.FAILED else logging.INFO
        self.log.log(level, f"video {status}", extra={
            "jobId": job_id, "videoId": video_id, "status": str(status),
            **({"error": error} if error else {}),
        })
        return event
