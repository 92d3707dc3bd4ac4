"""The ledger (pipeline/state/ledger.py): every transition writes the row, derives the job's status and
publishes one event; transitions the lifecycle does not allow raise and write nothing. Real
SQLite in a temporary data folder, a fake wall clock."""

from __future__ import annotations

import pytest
import trio

from pipeline.config import Settings
from pipeline.service import Service
from pipeline.state.events import JobChanged, JobDeleted, Progress, VideoChanged
from pipeline.state.rows import Output
from pipeline.state.states import IllegalTransition, JobStatus, VideoStatus

V, J = VideoStatus, JobStatus


class FakeClock:
    now = 5_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def service(tmp_path):
    svc = Service(Settings(data_dir=tmp_path / "data", job_ttl=100.0), clock=FakeClock())
    yield svc
    svc.close()


async def _job(service, job_id: str = "j1", videos: int = 2) -> list[str]:
    ids = [f"v{job_id}{k}" for k in range(videos)]
    await service.ledger.job_queued(
        job_id=job_id, seed="s", variations=2, options={},
        videos=[{"id": vid, "name": f"{vid}.mp4", "upload_path": None, "size": 10,
                 "duration": 1.0, "info": {}} for vid in ids])
    return ids


async def _events(sub) -> list:
    out = []
    while sub._events or sub._ticks:
        out.append(await sub.receive())
    return out


async def test_a_job_through_every_transition(service):
    ledger = service.ledger
    with service.hub.subscribe() as sub:
        a, b = await _job(service)
        assert await _events(sub) == [JobChanged("j1", J.QUEUED)]

        assert await ledger.started(a) == VideoChanged("j1", a, V.PROCESSING, J.PROCESSING, 0.0)
        await ledger.progressed("j1", a, 42.04)
        assert (await service.store.video(a)).progress == 42.04
        assert await _events(sub) == [VideoChanged("j1", a, V.PROCESSING, J.PROCESSING, 0.0),
                                      Progress("j1", a, 42.0)]

        outputs = [Output(index=0, name="a_v01.mp4", path="/x/v01.mp4", size=5)]
        assert (await ledger.finished(a, outputs)).job_status == J.PROCESSING  # b still queued
        assert [o.name for o in (await service.store.get_job("j1")).videos[0].outputs] \
            == ["a_v01.mp4"]
        await ledger.started(b)
        event = await ledger.failed(b, "broken", retryable=True, stderr_tail="tail")
        assert event == VideoChanged("j1", b, V.FAILED, J.COMPLETED, error="broken")
        job = await service.store.get_job("j1")
        assert job.status == J.COMPLETED and job.expires_at == 5_000.0 + 100.0
        assert job.videos[1].error == "broken"

        # A retry re-opens the job; its expiry is lifted until it finishes again.
        assert (await ledger.requeued(b)).job_status == J.PROCESSING
        job = await service.store.get_job("j1")
        assert job.expires_at is None and job.videos[1].error is None
        await ledger.started(b)
        assert (await ledger.cancelled(b)).job_status == J.COMPLETED
        await _events(sub)

        assert await ledger.expired("j1")
        assert await _events(sub) == [JobChanged("j1", J.EXPIRED)]
        assert not await ledger.expired("j1")  # once
        assert await ledger.deleted("j1")
        assert await _events(sub) == [JobDeleted("j1")]
        assert await service.store.get_job("j1") is None
        assert not await ledger.deleted("j1")


async def test_interrupted_videos_are_requeued_and_attempts_counted(service):
    (a,) = await _job(service, videos=1)
    ledger = service.ledger
    await ledger.started(a)
    assert (await ledger.interrupted(a)).job_status == J.PROCESSING  # it will resume
    await ledger.requeued(a)
    await ledger.started(a)
    assert (await service.store.video(a)).attempts == 2
    # Killed mid-render: the next start finds it processing and queues it again.
    assert (await ledger.requeued(a)).status == V.QUEUED


@pytest.mark.parametrize("start, transition", [
    (V.QUEUED, "finished"), (V.QUEUED, "interrupted"), (V.QUEUED, "requeued"),
    (V.PROCESSING, "started"),
    (V.COMPLETED, "started"), (V.COMPLETED, "failed"), (V.COMPLETED, "cancelled"),
    (V.COMPLETED, "requeued"), (V.COMPLETED, "interrupted"), (V.COMPLETED, "finished"),
    (V.FAILED, "finished"), (V.FAILED, "started"), (V.FAILED, "cancelled"),
    (V.CANCELLED, "finished"), (V.CANCELLED, "cancelled"),
])
async def test_illegal_transitions_raise_and_write_nothing(service, start, transition):
    (a,) = await _job(service, videos=1)
    ledger = service.ledger
    steps = {V.PROCESSING: ["started"], V.COMPLETED: ["started", "finished"],
             V.FAILED: ["started", "failed"], V.CANCELLED: ["cancelled"], V.QUEUED: []}[start]
    for step in steps:
        await _apply(ledger, step, a)
    before = await service.store.get_job("j1")
    with service.hub.subscribe() as sub:
        with pytest.raises(IllegalTransition):
            await _apply(ledger, transition, a)
        assert await _events(sub) == []
    assert await service.store.get_job("j1") == before


async def _apply(ledger, name: str, video_id: str):
    match name:
        case "finished":
            return await ledger.finished(video_id, [])
        case "failed":
            return await ledger.failed(video_id, "x", retryable=True)
        case _:
            return await getattr(ledger, name)(video_id)


async def test_a_video_deleted_meanwhile_is_no_error(service):
    (a,) = await _job(service, videos=1)
    await service.ledger.deleted("j1")
    with service.hub.subscribe() as sub:
        assert await service.ledger.started(a) is None
        assert await service.ledger.failed(a, "x", retryable=True) is None
        assert await _events(sub) == []


async def test_progress_reaches_the_row_at_most_once_a_second(service, autojump_clock):
    (a,) = await _job(service, videos=1)
    await service.ledger.started(a)
    await service.ledger.progressed("j1", a, 10.0)
    await service.ledger.progressed("j1", a, 20.0)  # same instant: the hub has it, the row not
    assert (await service.store.video(a)).progress == 10.0
    await trio.sleep(1.0)
    await service.ledger.progressed("j1", a, 30.0)
    assert (await service.store.video(a)).progress == 30.0
