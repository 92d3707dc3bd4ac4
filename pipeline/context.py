"""What each actor uses of the service, as narrow ``Protocol`` types.

``pipeline/service.py: Service`` satisfies all of them; an actor takes the one it needs, so its
dependencies are visible in its signature (and a test can hand it something smaller).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import trio

if TYPE_CHECKING:  # imports for the annotations only: the actors import this module
    from pipeline.actors.janitor import Janitor
    from pipeline.actors.scheduler import SchedulerMessage
    from pipeline.config import Settings
    from pipeline.state.ledger import Ledger
    from pipeline.state.store import AsyncStore


class RunnerContext(Protocol):
    """A render: settings, the FFmpeg binary, reads of the store and the pid/upload columns,
    the ledger for every state change, and a hook for the FFmpeg time metric."""

    settings: Settings
    ffmpeg: str
    store: AsyncStore
    ledger: Ledger

    def ffmpeg_finished(self, seconds: float) -> None: ...


class SchedulerContext(RunnerContext, Protocol):
    """The scheduler starts renders (so it needs what they need) and logs crashes."""

    log: logging.Logger


class IntakeContext(Protocol):
    """Intake creates jobs through the ledger and queues their videos."""

    ledger: Ledger
    log: logging.Logger
    scheduler_send: trio.MemorySendChannel[SchedulerMessage]


class JanitorContext(Protocol):
    """The janitor reads the store, expires and deletes through the ledger, and cancels a job's
    renders (a scheduler message) before deleting it."""

    settings: Settings
    store: AsyncStore
    ledger: Ledger
    clock: Callable[[], float]

    async def cancel_job(self, job_id: str) -> None: ...


class LifecycleContext(Protocol):
    """User requests on a job: store reads, the clock for expiry, the scheduler's cancel and
    retry, the janitor's deletion."""

    store: AsyncStore
    clock: Callable[[], float]
    janitor: Janitor

    async def cancel_job(self, job_id: str) -> None: ...

    async def cancel_video(self, job_id: str, video_id: str) -> None: ...

    async def retry(self, job_id: str, video_id: str) -> bool: ...
