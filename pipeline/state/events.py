"""What the pipeline tells the outside world: one frozen event per state transition.

The ledger (``pipeline/state/ledger.py``) publishes these to the progress hub; the web layer turns
them into JSON at the wire (``web/views.py: event_messages``) and nowhere else. Every event
belongs to one job (``job_id``), which is what subscribers filter on.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.state.states import JobStatus, VideoStatus


@dataclass(frozen=True)
class Event:
    """Base of every event: the job it is about."""

    job_id: str


@dataclass(frozen=True)
class JobChanged(Event):
    """The job's own status changed without a video changing (created, expired)."""

    status: JobStatus


@dataclass(frozen=True)
class VideoChanged(Event):
    """A video changed status; ``job_status`` is its job's status after the change."""

    video_id: str
    status: VideoStatus
    job_status: JobStatus
    progress: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class Progress(Event):
    """A render advanced (throttled by the hub; only the latest tick per video is kept)."""

    video_id: str
    progress: float


@dataclass(frozen=True)
class JobDeleted(Event):
    """The job and its files are gone."""
