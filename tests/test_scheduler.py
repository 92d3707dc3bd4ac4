"""Scheduler messages (pipeline/actors/scheduler.py): a cancel is answered once the job's renders have
stopped, without holding up the messages behind it; retries go through the ledger."""

from __future__ import annotations

import pytest
import trio

from pipeline.actors.runner import RenderHandle
from pipeline.actors.scheduler import CancelJob, RetryVideo
from pipeline.config import Settings
from pipeline.service import Service
from pipeline.state.states import VideoStatus


@pytest.fixture
def service(tmp_path):
    svc = Service(Settings(data_dir=tmp_path / "data", workers=1))
    yield svc
    svc.close()


async def _job(service, job_id: str) -> str:
    vid = f"v{job_id}"
    await service.ledger.job_queued(job_id=job_id, seed="s", variations=1, options={}, videos=[
        {"id": vid, "name": "a.mp4", "upload_path": None, "size": 1, "duration": 1.0, "info": {}}])
    return vid


async def _ask(scheduler, make_message):
    send, recv = trio.open_memory_channel(1)
    await scheduler._handle(make_message(send))
    scheduler._notify()  # as the message loop does after each message
    try:
        return recv.receive_nowait()
    except trio.WouldBlock:
        return recv


async def test_a_cancel_waits_for_its_renders_but_not_the_next_message(service):
    scheduler = service.scheduler
    vid = await _job(service, "jslow")
    await service.ledger.started(vid)
    # A render that has not stopped yet (FFmpeg still finishing within its grace).
    stuck = RenderHandle("jslow", vid, trio.CancelScope())
    scheduler.running[vid] = stuck

    pending = await _ask(scheduler, lambda r: CancelJob("jslow", r))
    assert isinstance(pending, trio.MemoryReceiveChannel)  # not answered yet
    assert stuck.reason == "cancel" and stuck.cancel_scope.cancel_called
    # The next message is handled and answered meanwhile.
    assert await _ask(scheduler, lambda r: CancelJob("jother", r)) is True

    scheduler.running.pop(vid)  # the render stopped
    scheduler._notify()
    assert pending.receive_nowait() is True


async def test_retry_requeues_through_the_ledger_once(service):
    scheduler = service.scheduler
    vid = await _job(service, "jr")
    await service.ledger.started(vid)
    await service.ledger.failed(vid, "broken", retryable=True)
    assert await _ask(scheduler, lambda r: RetryVideo("jr", vid, r)) is True
    assert (await service.store.video(vid)).status == VideoStatus.QUEUED
    assert [m.video_id for m in scheduler.queue] == [vid]
    # A second retry of the same video finds it queued: refused, queued once.
    assert await _ask(scheduler, lambda r: RetryVideo("jr", vid, r)) is False
    assert [m.video_id for m in scheduler.queue] == [vid]
