"""Janitor: expiry, eviction order, make_room, orphans and deletion, in-process with a fake wall
clock and a tiny storage cap. Jobs are written straight into the store with small files on
disk (what the janitor looks at), so no FFmpeg is needed."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pipeline.actors.janitor import expected_output_bytes
from pipeline.config import Settings
from pipeline.service import Service
from pipeline.state.events import JobChanged
from pipeline.state.rows import Output
from pipeline.state.states import JobStatus, VideoStatus

OLD = time.time() - 3600  # older than the orphan grace


class FakeClock:
    def __init__(self, now: float = 1_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def service(tmp_path, clock):
    settings = Settings(data_dir=tmp_path / "data", storage_cap=10_000, evict_at=0.85,
                        job_ttl=100.0, expired_keep=50.0)
    svc = Service(settings, clock=clock)
    yield svc
    svc.close()


async def add_job(service, job_id: str, status: VideoStatus, *, at: float,
                  out_bytes: int = 0, upload_bytes: int = 0, outputs: int = 2) -> dict:
    """A one-video job whose video reached ``status`` at time ``at``, with files on disk."""
    s = service.settings
    vid = f"v{job_id}"
    upload = s.uploads_dir / job_id / f"{vid}.upload"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"u" * upload_bytes)
    await service.store.create_job(
        job_id=job_id, seed="seed", variations=outputs, options={}, now=at,
        videos=[{"id": vid, "name": f"{job_id}.mp4", "upload_path": str(upload),
                 "size": upload_bytes, "duration": 1.0, "info": {}}],
    )
    rows = None
    if status == VideoStatus.COMPLETED:
        out_dir = s.outputs_dir / job_id / vid
        out_dir.mkdir(parents=True)
        rows = []
        for i in range(outputs):
            path = out_dir / f"v{i + 1:02d}.mp4"
            path.write_bytes(b"o" * (out_bytes // outputs))
            rows.append(Output(index=i, name=f"{job_id}_v{i + 1:02d}.mp4", path=str(path),
                               size=out_bytes // outputs))
        upload.unlink()
        upload.parent.rmdir()
        await service.store.clear_upload_path(vid)
    if status != VideoStatus.QUEUED:
        await service.store.set_video_state(vid, status, now=at, job_ttl=s.job_ttl, outputs=rows)
    return await service.store.get_job(job_id)


def _age(path: Path, when: float = OLD) -> None:
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(p, (when, when))


async def _status(service, job_id: str) -> str | None:
    job = await service.store.job_row(job_id)
    return job.status if job else None


async def test_expired_jobs_lose_their_files_then_their_row(service, clock):
    s = service.settings
    await add_job(service, "ja", VideoStatus.COMPLETED, at=1_000, out_bytes=200)   # expires 1100
    await add_job(service, "jb", VideoStatus.COMPLETED, at=1_060, out_bytes=200)   # expires 1160
    await add_job(service, "jc", VideoStatus.PROCESSING, at=900, upload_bytes=300)
    await add_job(service, "jd", VideoStatus.FAILED, at=1_000, upload_bytes=300)    # expires 1100

    with service.hub.subscribe() as sub:
        clock.now = 1_099
        report = await service.janitor.sweep()
        assert report.expired == () and report.purged == ()

        clock.now = 1_101
        report = await service.janitor.sweep()
        assert sorted(report.expired) == ["ja", "jd"]
        assert await sub.receive() == JobChanged("ja", JobStatus.EXPIRED)
    assert await _status(service, "ja") == "expired"
    assert not (s.outputs_dir / "ja").exists()
    assert not (s.uploads_dir / "jd").exists()  # a failed job's kept upload goes too
    assert (s.outputs_dir / "jb").exists() and await _status(service, "jb") == "completed"
    assert (s.uploads_dir / "jc").exists() and await _status(service, "jc") == "processing"

    # Still listed as expired for ``expired_keep`` after it expired, then gone.
    clock.now = 1_100 + 49
    await service.janitor.sweep()
    assert await _status(service, "ja") == "expired"
    clock.now = 1_100 + 50
    report = await service.janitor.sweep()
    assert sorted(report.purged) == ["ja", "jd"]
    assert await _status(service, "ja") is None
    assert [j.id for j in await service.store.list_jobs()] == ["jb", "jc"]


async def test_eviction_takes_the_oldest_completion_first_and_never_running_jobs(service, clock):
    s = service.settings  # cap 10 000, evict above 8 500
    await add_job(service, "jnew", VideoStatus.COMPLETED, at=1_010, out_bytes=3_000)
    await add_job(service, "jold", VideoStatus.COMPLETED, at=1_005, out_bytes=3_000)
    await add_job(service, "jrun", VideoStatus.PROCESSING, at=1_000, upload_bytes=1_000, outputs=1)
    # 7 000 on disk and 2 000 reserved for the running video's output: over 8 500.
    assert service.janitor.disk_usage().total == 7_000
    assert await service.janitor.reserved() == expected_output_bytes(1_000) == 2_000

    report = await service.janitor.sweep()
    assert report.evicted == ("jold",)
    assert report.usage == 4_000
    assert await _status(service, "jold") == "expired"
    assert not (s.outputs_dir / "jold").exists()
    assert await _status(service, "jnew") == "completed"

    # A running job alone over the threshold: every finished job goes, the running one stays.
    (s.uploads_dir / "jrun" / "vjrun.upload").write_bytes(b"u" * 9_000)
    report = await service.janitor.sweep()
    assert report.evicted == ("jnew",)
    assert await _status(service, "jrun") == "processing"
    assert (s.uploads_dir / "jrun" / "vjrun.upload").exists()
    assert (await service.janitor.sweep()).evicted == ()


async def test_make_room_evicts_only_when_that_makes_the_upload_fit(service):
    await add_job(service, "jdone", VideoStatus.COMPLETED, at=1_000, out_bytes=3_000)
    await add_job(service, "jrun", VideoStatus.PROCESSING, at=1_000, upload_bytes=1_000)
    janitor = service.janitor
    # The running video's two variations are expected to take this much, not yet written.
    reserved = expected_output_bytes(1_000, 2)
    assert await janitor.reserved() == reserved
    room = 10_000 - 3_000 - 1_000 - reserved

    assert await janitor.make_room(room)  # exactly the cap: fits as is
    assert await _status(service, "jdone") == "completed"
    # More than the cap even with the finished job gone: refused, nothing evicted.
    assert not await janitor.make_room(room + 3_000 + 1)
    assert await _status(service, "jdone") == "completed"
    # Fits once the finished job is evicted.
    assert await janitor.make_room(room + 3_000)
    assert await _status(service, "jdone") == "expired"
    assert janitor.disk_usage().total == 1_000


async def test_reservations_shrink_as_outputs_are_written_and_end_with_the_render(service):
    s = service.settings
    await add_job(service, "jrun", VideoStatus.PROCESSING, at=1_000, upload_bytes=500, outputs=3)
    full = expected_output_bytes(500, 3)
    assert await service.janitor.reserved() == full
    part = s.outputs_dir / "jrun" / "vjrun" / "v01.mp4.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"p" * 400)  # counted on disk now, so no longer reserved twice
    assert await service.janitor.reserved() == full - 400
    for status in (VideoStatus.FAILED, VideoStatus.COMPLETED):
        await service.store.set_video_state("vjrun", status, now=1_001, job_ttl=s.job_ttl)
        assert await service.janitor.reserved() == 0, status
    # Queued again (a retry): reserved again.
    await service.store.set_video_state("vjrun", VideoStatus.QUEUED, now=1_002, job_ttl=s.job_ttl)
    assert await service.janitor.reserved() == full - 400


async def test_a_sweep_evicts_for_the_outputs_still_to_come(service, clock):
    await add_job(service, "jold", VideoStatus.COMPLETED, at=1_000, out_bytes=4_000)
    # 4 000 stored is under 85 % of the cap; with what the queued video will write it is not.
    await add_job(service, "jnew", VideoStatus.QUEUED, at=1_001, upload_bytes=300, outputs=10)
    assert 4_300 < 8_500 < 4_300 + expected_output_bytes(300, 10)
    report = await service.janitor.sweep()
    assert report.evicted == ("jold",)
    assert await _status(service, "jnew") == "queued"


async def test_orphans_and_rows_without_files(service, clock):
    s = service.settings
    done = await add_job(service, "jdone", VideoStatus.COMPLETED, at=1_000, out_bytes=400,
                         outputs=2)
    lost = await add_job(service, "jlost", VideoStatus.COMPLETED, at=1_000, out_bytes=400)
    failed = await add_job(service, "jfail", VideoStatus.FAILED, at=1_000, upload_bytes=100)
    await add_job(service, "jrun", VideoStatus.PROCESSING, at=1_000, upload_bytes=100)

    # Orphans older than the grace: unknown job folders, stray files, an unknown video folder.
    for p in [s.outputs_dir / "jgone" / "vx" / "v01.mp4", s.uploads_dir / "jgone" / "a.upload",
              s.outputs_dir / "jdone" / "vother" / "v01.mp4", s.outputs_dir / "jdone" / "vjdone" / "junk.mp4",
              s.uploads_dir / "jfail" / "stray.upload", s.outputs_dir / "stray.txt"]:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    # The previews of a finished video's source and variations belong to it.
    previews = [s.outputs_dir / "jdone" / "vjdone" / n
                for n in ("source.preview.jpg", "v01.preview.jpg")]
    for p in previews:
        p.write_bytes(b"jpeg")
    stray_preview = s.outputs_dir / "jdone" / "vjdone" / "v07.preview.jpg"
    stray_preview.write_bytes(b"jpeg")
    # Fresh ones (an upload still arriving; a render writing its part file) stay.
    fresh_upload = s.uploads_dir / "jarriving" / "v1.upload"
    fresh_upload.parent.mkdir()
    fresh_upload.write_bytes(b"x")
    part = s.outputs_dir / "jrun" / "vjrun" / "v01.mp4.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x")
    _age(s.outputs_dir)
    _age(s.uploads_dir)
    os.utime(fresh_upload)
    os.utime(part, (OLD, OLD))  # even an old part file belongs to its running render

    # Rows whose files are gone: one output of jdone, every output of jlost, jfail's upload.
    Path(done.videos[0].outputs[1].path).unlink()
    for o in lost.videos[0].outputs:
        Path(o.path).unlink()
    Path(failed.videos[0].upload_path).unlink()

    report = await service.janitor.sweep()
    assert sorted(report.orphans_removed) == sorted([
        "outputs/jgone", "uploads/jgone", "outputs/jdone/vother",
        "outputs/jdone/vjdone/junk.mp4", "uploads/jfail/stray.upload", "outputs/stray.txt",
        "outputs/jdone/vjdone/v07.preview.jpg",
    ])
    assert fresh_upload.exists() and part.exists()
    assert all(p.exists() for p in previews)
    assert report.outputs_forgotten == 3
    assert report.expired == ("jlost",)
    job = await service.store.get_job("jdone")
    assert [o.index for o in job.videos[0].outputs] == [0]
    assert job.status == "completed"
    assert await _status(service, "jlost") == "expired"
    assert (await service.store.video("vjfail")).upload_path is None
    assert await _status(service, "jrun") == "processing"


async def test_delete_job_removes_files_and_rows(service):
    s = service.settings
    await add_job(service, "jdone", VideoStatus.COMPLETED, at=1_000, out_bytes=400)
    await add_job(service, "jfail", VideoStatus.FAILED, at=1_000, upload_bytes=100)
    assert await service.janitor.delete_job("jdone")
    assert await service.janitor.delete_job("jfail")
    assert not await service.janitor.delete_job("jdone")
    assert await service.store.list_jobs() == []
    assert list(s.outputs_dir.iterdir()) == [] and list(s.uploads_dir.iterdir()) == []
