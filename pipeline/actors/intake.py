"""Intake actor: probes uploaded files, writes the job rows, and queues the videos.

The web layer streams an upload into ``uploads/<job>/`` and sends an ``IntakeRequest``; intake
answers on the request's one-shot reply channel with ``IntakeAccepted`` or ``IntakeRejected``.

Resource handling: on rejection intake writes nothing to the store; the caller still owns the
upload folder and removes it. On acceptance the folder belongs to the job.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

import trio

from pipeline.actors.scheduler import VideoQueued, is_disk_full
from pipeline.context import IntakeContext
from pipeline.media.effects import EffectOptions
from pipeline.media.formats import Placement
from pipeline.media.naming import default_job_name
from pipeline.media.probe import MediaInfo, NotAVideo, Unrenderable, probe_source


@dataclass(frozen=True)
class UploadedFile:
    video_id: str
    name: str  # display name as the client sent it; never used as a path
    path: Path
    size: int


@dataclass(frozen=True)
class IntakeRequest:
    job_id: str
    files: tuple[UploadedFile, ...]
    variations: int
    seed: str | None
    options: EffectOptions
    reply: trio.MemorySendChannel[IntakeAccepted | IntakeRejected] = field(compare=False, repr=False)
    name: str | None = None  # None: named after its files (``default_job_name``)
    placement: Placement = Placement()  # the formats, fit and loudness asked for


@dataclass(frozen=True)
class IntakeAccepted:
    job_id: str
    seed: str
    videos: tuple[dict, ...]
    name: str = ""  # as given, or the one made from its files


@dataclass(frozen=True)
class IntakeRejected:
    code: str
    message: str
    status: int = 415
    video_id: str | None = None  # the file refused, when one is


async def intake_actor(service: IntakeContext,
                       receive: trio.MemoryReceiveChannel[IntakeRequest]) -> None:
    """Serve intake requests until the channel closes or the scope is cancelled."""
    async with receive:
        async for req in receive:
            try:
                reply = await _handle(service, req)
            except Exception as exc:  # a bug must not kill intake for everyone else
                service.log.exception("intake failed", extra={"jobId": req.job_id})
                if is_disk_full(exc):
                    reply = IntakeRejected("storage_full", "The server's disk is full. Wait for "
                                           "running jobs to finish, or delete some jobs.", 507)
                else:
                    reply = IntakeRejected("intake_error", f"could not register the upload: {exc}", 500)
            try:
                req.reply.send_nowait(reply)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass


async def _handle(service: IntakeContext, req: IntakeRequest) -> IntakeAccepted | IntakeRejected:
    infos: list[MediaInfo] = []
    for f in req.files:
        try:
            info = await trio.to_thread.run_sync(probe_source, f.path)
        except Unrenderable as exc:
            return IntakeRejected(exc.code, f"{f.name!r} cannot be used: {exc}", 422, f.video_id)
        except NotAVideo as exc:
            return IntakeRejected("not_a_video", f"{f.name!r} is not a video we can process: {exc}",
                                  415, f.video_id)
        infos.append(info)
    seed = req.seed or secrets.token_hex(8)
    name = req.name or default_job_name([f.name for f in req.files])
    videos = [
        {
            "id": f.video_id,
            "name": f.name,
            "upload_path": str(f.path),
            "size": f.size,
            "duration": info.duration,
            "info": info.to_dict(),  # the runner renders from it: no second probe
        }
        for f, info in zip(req.files, infos, strict=True)
    ]
    await service.ledger.job_queued(
        job_id=req.job_id,
        seed=seed,
        variations=req.variations,
        options={"exclude": sorted(req.options.exclude),
                 # Stored only when asked for: a default job's options are as before.
                 **({} if req.placement.is_default
                    else {"placement": req.placement.to_dict()})},
        videos=videos,
        name=name,
    )
    for v in videos:
        await service.scheduler_send.send(VideoQueued(job_id=req.job_id, video_id=v["id"]))
    return IntakeAccepted(
        job_id=req.job_id,
        seed=seed,
        videos=tuple({"id": v["id"], "name": v["name"], "size": v["size"]} for v in videos),
        name=name,
    )
