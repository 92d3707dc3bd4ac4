"""User requests on an existing job: download, cancel (the job or one video), retry a video,
delete.

The rules live here (which state allows what, and the sentence that explains a refusal); the web
layer only maps ``LifecycleError`` subclasses to HTTP statuses.

Error handling: every refusal raises a ``LifecycleError`` with a stable snake_case ``code`` and a
human ``message``: ``JobNotFound`` (unknown id), ``Conflict`` (not possible in the job's current
state), ``Gone`` (the results expired and were deleted).
"""

from __future__ import annotations

import os
from pathlib import Path

import trio

from pipeline.context import LifecycleContext
from pipeline.delivery.zipper import Archive, NothingToZip, open_archive
from pipeline.state.rows import Job, Video
from pipeline.state.states import JOB_TERMINAL, RETRYABLE, JobStatus, VideoStatus


class LifecycleError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class JobNotFound(LifecycleError):
    pass


class Conflict(LifecycleError):
    pass


class Gone(LifecycleError):
    pass


def _not_found(what: str = "job") -> JobNotFound:
    if what == "video":
        return JobNotFound("video_not_found", "This job has no video with this id.")
    return JobNotFound("job_not_found", "There is no job with this id.")


def is_expired(job: Job, now: float) -> bool:
    return job.status == JobStatus.EXPIRED or (
        job.expires_at is not None and job.expires_at <= now
    )


async def _job(service: LifecycleContext, job_id: str) -> Job:
    job = await service.store.get_job(job_id)
    if job is None:
        raise _not_found()
    return job


def _video(job: Job, video_id: str) -> Video:
    video = next((v for v in job.videos if v.id == video_id), None)
    if video is None:
        raise _not_found("video")
    return video


async def open_video(service: LifecycleContext, job_id: str, video_id: str) -> Video:
    """One video of a job whose results are still kept (its files: ``web/files.py``)."""
    job = await _job(service, job_id)
    video = _video(job, video_id)
    if is_expired(job, service.clock()):
        raise Gone("job_expired", "This job's results have expired and were deleted.")
    return video


async def open_download(service: LifecycleContext, job_id: str) -> tuple[Job, Archive]:
    """The job and its opened archive (the caller streams and closes it)."""
    job = await _job(service, job_id)
    if is_expired(job, service.clock()):
        raise Gone("job_expired", "This job's results have expired and were deleted.")
    if not any(v.status == VideoStatus.COMPLETED and v.outputs for v in job.videos):
        if job.status in JOB_TERMINAL:  # nothing will come: say so, not "yet"
            raise Conflict("not_ready", f"Nothing to download: the job is {job.status.value} "
                           "and none of its videos finished. Retry its videos to render them.")
        raise Conflict("not_ready", "Nothing to download yet: no video of this job has finished.")
    try:
        archive = await trio.to_thread.run_sync(open_archive, job)
    except NothingToZip:
        raise Gone("files_gone", "The files of this job are no longer on the server.") from None
    return job, archive


async def cancel_job(service: LifecycleContext, job_id: str) -> Job:
    """Stop the job's renders and drop its queued videos; finished outputs are kept.

    Returns the settled job. Raises ``Conflict`` when the job has already finished.
    """
    job = await _job(service, job_id)
    if job.status not in (JobStatus.QUEUED, JobStatus.PROCESSING):
        raise Conflict("not_running", f"This job is {job.status}: there is nothing to cancel.")
    await service.cancel_job(job_id)
    return await _job(service, job_id)


async def cancel_video(service: LifecycleContext, job_id: str, video_id: str) -> Job:
    """Stop one video's render or take it out of the queue; the job's other videos go on.

    Returns the settled job. Raises ``Conflict`` when the video is not queued or rendering.
    """
    job = await _job(service, job_id)
    video = _video(job, video_id)
    if video.status not in (VideoStatus.QUEUED, VideoStatus.PROCESSING):
        raise Conflict("not_running", f"This video is {video.status}: there is nothing to cancel.")
    await service.cancel_video(job_id, video_id)
    return await _job(service, job_id)


async def retry_video(service: LifecycleContext, job_id: str, video_id: str) -> Job:
    """Queue a failed, interrupted or cancelled video again, if its upload is still on disk.

    Returns the job as it is once the video is queued.
    """
    job = await _job(service, job_id)
    video = _video(job, video_id)
    if is_expired(job, service.clock()):
        raise Gone("job_expired", "This job has expired; upload the video again.")
    if video.status not in RETRYABLE:
        raise Conflict(
            "not_retryable",
            f"This video is {video.status}; only failed, interrupted or cancelled videos "
            "can be retried.",
        )
    upload = video.upload_path
    if not upload or not await trio.to_thread.run_sync(os.path.isfile, Path(upload)):
        raise Conflict("upload_gone",
                       "The original upload of this video is no longer on the server; "
                       "upload it again in a new job.")
    if not await service.retry(job_id, video_id):  # a second retry overtook this one
        raise Conflict("not_retryable", "This video is already queued again.")
    return await _job(service, job_id)


async def delete_job(service: LifecycleContext, job_id: str) -> None:
    """Cancel the job if it runs, then remove its files and rows."""
    if not await service.janitor.delete_job(job_id):
        raise _not_found()
