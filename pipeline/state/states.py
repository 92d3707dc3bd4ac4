"""Job and video states, with their terminal sets."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class VideoStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


class IllegalTransition(Exception):
    """A state change that the lifecycle does not allow from the current state (a bug in the
    caller, or a race it must handle); nothing was written."""


JOB_TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED})
VIDEO_TERMINAL = frozenset({VideoStatus.COMPLETED, VideoStatus.FAILED, VideoStatus.CANCELLED})
# Videos that still need (or may again need) FFmpeg time.
VIDEO_PENDING = frozenset({VideoStatus.QUEUED, VideoStatus.PROCESSING, VideoStatus.INTERRUPTED})
# Videos that a retry may queue again (when their upload is still kept).
RETRYABLE = frozenset({VideoStatus.FAILED, VideoStatus.INTERRUPTED, VideoStatus.CANCELLED})


def job_status_from_videos(statuses: list[str]) -> JobStatus:
    """A job is completed when any video completed, failed when all failed
    (docs/architecture.md, "One owner of state")."""
    if not statuses:
        return JobStatus.FAILED
    if any(s in VIDEO_PENDING for s in statuses):
        if all(s == VideoStatus.QUEUED for s in statuses):
            return JobStatus.QUEUED
        return JobStatus.PROCESSING
    if any(s == VideoStatus.COMPLETED for s in statuses):
        return JobStatus.COMPLETED
    if any(s == VideoStatus.CANCELLED for s in statuses):
        return JobStatus.CANCELLED
    return JobStatus.FAILED
